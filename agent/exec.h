/* exec: `redis-creds exec`, a supervisor for programs that read a password only at start.
 *
 * It reads <runtime_dir>/<name>.json (never the agent's socket), starts the program with
 * <prefix>USERNAME, <prefix>PASSWORD and REDIS_CREDS_FILE added to its environment (the
 * password is never in argv; the copies this process builds are wiped once the program
 * is started), and watches the runtime directory with inotify (the agent's rename
 * replaces the file, so a watch on the file would be lost; a directory deleted or moved
 * away is watched again at its path once it is back, where the agent republishes). At
 * each new version, after a random delay of up to --splay, it restarts the program
 * (SIGTERM, SIGKILL after --stop-timeout; one restart at a time; the new program gets the
 * newest credential) or, with --signal, sends it that signal. SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1 and
 * SIGUSR2 are forwarded; NOTIFY_SOCKET is passed through untouched.
 *
 * Exit status: the program's (128 + n when it died of signal n); 1 when the file is not
 * published within --wait; 2 on a usage error; 127 (126: not executable) when the program
 * cannot be started. Everything runs on one sd-event loop in the calling thread; the
 * caller must not have other threads (signals are blocked process-wide).
 */
#pragma once
#include <sys/inotify.h>
#include <stddef.h>

/* Runs the exec command. argv[0] is "exec", then its options, then the program and its
 * arguments (after "--" or the first non-option). Returns the process exit status. */
int exec_main(const char *runtime_dir, int argc, char **argv);

/* "SIGHUP", "HUP" or a number -> the signal number, or -EINVAL. */
int exec_parse_signal(const char *s);

/* A new environment: `environ` without <prefix>USERNAME, <prefix>PASSWORD and
 * REDIS_CREDS_FILE, then those three set. username NULL means the default user (an empty
 * value). The returned array and its last three strings are owned by the caller: free
 * with exec_env_free(), which wipes the password entry. NULL on -ENOMEM. */
char **exec_build_env(char *const *environ_in, const char *prefix, const char *username,
                      const char *password, size_t password_len, const char *file);
char **exec_env_free(char **env);

/* The runtime directory's watch (exec and `redis-creds watch`): the renames and writes in
 * it, and its own end; and the events that say the watch is lost (deleted, moved away,
 * unmounted): the path is then watched again once a directory is back there. */
#define EXEC_DIR_WATCH_MASK (IN_MOVED_TO | IN_CLOSE_WRITE | IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR)
#define EXEC_DIR_LOST_MASK (IN_DELETE_SELF | IN_MOVE_SELF | IN_IGNORED | IN_UNMOUNT)

/* The group to join to read path: its group, or "redis-creds" when that is root's or
 * cannot be found. For messages that name the way out; static storage (getgrgid). */
const char *exec_group_of(const char *path);

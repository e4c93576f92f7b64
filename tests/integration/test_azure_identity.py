"""The identity types of the azure-* sources (docs/design.md §4.2 identity vocabulary), each with the
real agent reading a Key Vault secret through the fake: managed identity through IMDS
(system- and user-assigned), through the App Service endpoint and through an Azure Arc
agent's challenge file, workload identity
(federated token file), client secret (file and $CREDENTIALS_DIRECTORY); config wins
over the environment; an unknown identity is reported and not retried."""
import os
import time

from azure_helpers import PW1, FEDERATED_AUDIENCE, az, make_jwt, write_file  # noqa: F401 - fixture


def kv_world(sc, az):
    sc.redis.create_user("app", PW1)
    az.fake.kv_set("cache-pw", PW1)


def test_managed_identity_user_assigned_by_client_id(sc, az):
    kv_world(sc, az)
    mi = az.fake.add_identity("agent-mi")
    az.fake.kv_allowed = {mi.object_id}        # the system identity may not read
    a = az.start([az.cred(path="cache-pw", username="app")],
                 [az.kv_source(identity=az.identity(client_id=mi.client_id))])
    sc.wait_published(password=PW1, timeout=5)
    r = [x for x in az.fake.requests if x.kind == "imds"][0]
    assert r.query["client_id"] == mi.client_id and r.query["resource"] == "https://vault.azure.net"
    assert r.headers.get("Metadata") == "true"
    az.assert_no_secrets(az.outputs(a))


def test_managed_identity_through_the_app_service_endpoint(sc, az):
    kv_world(sc, az)
    mi = az.fake.add_identity("site-mi")
    a = az.start([az.cred(path="cache-pw", username="app")],
                 [az.kv_source(identity=az.identity(app_service=True, object_id=mi.object_id))],
                 env={"IDENTITY_ENDPOINT": az.fake.app_service_endpoint,
                      "IDENTITY_HEADER": az.fake.identity_header})
    sc.wait_published(password=PW1, timeout=5)
    assert az.fake.count("imds") == 0
    r = [x for x in az.fake.requests if x.kind == "appservice"][0]
    assert r.query["api-version"] == "2019-08-01" and r.query["principal_id"] == mi.object_id
    assert r.status == 200
    az.fake.leaked.add(az.fake.identity_header)
    az.assert_no_secrets(az.outputs(a))


def test_workload_identity_from_the_environment_with_config_winning(sc, az):
    kv_world(sc, az)
    issuer, subject = "https://oidc.example.test/cluster-1", "system:serviceaccount:default:app"
    app = az.fake.add_app("aks-app", federated=[(issuer, subject)])
    # kubelet's projected token: 0644, reached through a ..data symlink.
    real = os.path.join(az.dir, "..2026_11_23_00_00_00.123")
    os.mkdir(real, 0o755)
    assertion = make_jwt({"aud": [FEDERATED_AUDIENCE], "iss": issuer, "sub": subject,
                          "exp": int(time.time()) + 3600, "iat": int(time.time())})
    write_file(os.path.join(real, "azure-identity-token"), assertion, mode=0o644)
    os.symlink(os.path.basename(real), os.path.join(az.dir, "..data"))
    link = os.path.join(az.dir, "azure-identity-token")
    os.symlink("..data/azure-identity-token", link)
    az.fake.leaked.add(assertion)
    a = az.start([az.cred(path="cache-pw", username="app")],
                 [az.kv_source(identity={"type": "workload", "tenant_id": az.fake.tenant})],
                 env={"AZURE_CLIENT_ID": app.client_id, "AZURE_TENANT_ID": "wrong-tenant-from-env",
                      "AZURE_FEDERATED_TOKEN_FILE": link, "AZURE_AUTHORITY_HOST": az.fake.url + "/"})
    sc.wait_published(password=PW1, timeout=5)
    r = [x for x in az.fake.requests if x.kind == "aad"]
    assert len(r) == 1 and r[0].path == "/%s/oauth2/v2.0/token" % az.fake.tenant and r[0].status == 200
    az.assert_no_secrets(az.outputs(a))


def test_client_secret_from_a_file_then_refused(sc, az):
    kv_world(sc, az)
    app = az.fake.add_app("sp", secret="sp-secret-value-0f3a9")
    sfile = write_file(os.path.join(az.dir, "client-secret"), "sp-secret-value-0f3a9\n")
    a = az.start([az.cred(path="cache-pw", username="app", poll_interval="300ms")],
                 [az.kv_source(identity=az.identity("client_secret", client_id=app.client_id,
                                                    client_secret_file=sfile))])
    before = sc.wait_published(password=PW1, timeout=5)
    assert az.fake.count("aad", status=200) == 1
    # The secret is replaced by a wrong one and the vault refuses the cached token: the
    # plugin asks again, Entra refuses the secret (AUTH), the file stays.
    mark = a.log_mark()
    write_file(sfile, "not-the-secret-7d1e\n")
    az.fake.leaked.add("not-the-secret-7d1e")
    az.fake.inject("keyvault", status=401, body={"error": {"code": "Unauthorized", "message": "AKV10022"}},
                   headers={"WWW-Authenticate": 'Bearer authorization="x", resource="https://vault.azure.net"'},
                   count=1)
    line = a.wait_log("(auth)", since=mark, timeout=5)
    assert "invalid_client" in line and "AADSTS7000215" in line, line
    assert sc.read_doc() == before
    az.assert_no_secrets(az.outputs(a))


def test_client_secret_from_the_credentials_directory(sc, az):
    kv_world(sc, az)
    app = az.fake.add_app("sp2", secret="sp2-secret-value-c4d1")
    creds = os.path.join(az.dir, "creds")
    os.mkdir(creds, 0o700)
    write_file(os.path.join(creds, "azure-client-secret"), "sp2-secret-value-c4d1")
    a = az.start([az.cred(path="cache-pw", username="app")],
                 [az.kv_source(identity=az.identity("client_secret", client_id=app.client_id))],
                 env={"CREDENTIALS_DIRECTORY": creds})
    sc.wait_published(password=PW1, timeout=5)
    az.assert_no_secrets(az.outputs(a))


def test_unknown_identity_is_reported_and_not_retried(sc, az):
    kv_world(sc, az)
    a = az.start([az.cred(path="cache-pw", username="app", poll_interval="250ms")],
                 [az.kv_source(identity=az.identity(client_id="00000000-dead-beef-0000-000000000000"))])
    a.wait_log("Identity not found", timeout=5)
    row, _ = az.status_json("cache")
    assert "Identity not found" in row["last_error"] and row["state"] == "store-error", row
    # not retried: nothing is scheduled until a refresh or a reload
    assert row["next_check"] is None and row["errors_total"] == 1, row
    assert az.fake.count("imds") == 1, "IMDS 400 identity not found must not be retried"
    assert sc.read_doc() is None
    # The operator assigns the identity (here: the fake learns it) and asks for a refresh.
    mi = az.fake.add_identity("late")
    mi.client_id = "00000000-dead-beef-0000-000000000000"
    r = sc.run_cli("-c", sc.tree.conf, "refresh", "cache")
    assert r.returncode == 0, r.stderr
    sc.wait_published(password=PW1, timeout=5)
    assert az.fake.count("imds") == 2
    az.assert_no_secrets(az.outputs(a))


def arc_world(sc, az, key_dir=None):
    """The fake plays the Arc agent, writing challenge files to key_dir (default: the
    token directory the agent is told about). Returns (token_dir, environment)."""
    kv_world(sc, az)
    tokens = os.path.join(az.dir, "tokens")
    az.fake.enable_arc(key_dir or tokens)
    os.makedirs(tokens, 0o755, exist_ok=True)
    return tokens, {"IDENTITY_ENDPOINT": az.fake.arc_identity_endpoint, "IMDS_ENDPOINT": az.fake.url}


def test_arc_managed_identity_answers_the_challenge_file(sc, az):
    tokens, env = arc_world(sc, az)
    a = az.start([az.cred(path="cache-pw", username="app")],
                 [az.kv_source(identity={"type": "managed", "arc_token_dir": tokens})], env=env)
    sc.wait_published(password=PW1, timeout=5)
    r = [x for x in az.fake.requests if x.kind == "arc"]
    # Asked, challenged, answered with the file's content (the fake checks it).
    assert [x.status for x in r] == [401, 200], r
    assert r[0].query["api-version"] == "2020-06-01" and r[0].query["resource"] == "https://vault.azure.net"
    assert all(x.headers.get("Metadata") == "true" for x in r)
    assert az.fake.count("imds") == 0 and az.fake.count("keyvault", status=200) >= 1
    az.assert_no_secrets(az.outputs(a), az.status().stdout)


def test_arc_challenge_outside_the_token_directory_is_refused(sc, az):
    elsewhere = os.path.join(sc.tree.root, "elsewhere")
    tokens, env = arc_world(sc, az, key_dir=elsewhere)
    a = az.start([az.cred(path="cache-pw", username="app", poll_interval="250ms")],
                 [az.kv_source(identity={"type": "managed", "arc_token_dir": tokens})], env=env)
    line = a.wait_log("401 without a usable challenge", timeout=5)
    assert "(auth)" in line and "managed identity (Azure Arc)" in line, line
    row, st = az.status_json("cache")
    assert row["state"] == "store-error", row
    assert ('the challenge names "%s/' % elsewhere in row["last_error"]
            and "not a <name>.key file directly in %s" % tokens in row["last_error"]), row
    # The file was never read or sent, and nothing was published.
    assert az.fake.count("arc", status=200) == 0 and az.fake.count("keyvault") == 0
    assert sc.read_doc() is None
    az.assert_no_secrets(az.outputs(a), st.stdout, az.status().stdout)

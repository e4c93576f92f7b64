import sys
sys.path.insert(0, "/work/main/tests/integration")
from vault_helpers import vault, PW1, PW2  # noqa
import rc_harness as h

def test_smoke(vault, sc):
    vault.fake.kv2_put("secret", "redis/cache", {"username": "app", "password": PW1})
    a = vault.start()
    d = sc.wait_published(password=PW1)
    print(d)
    vault.fake.kv2_put("secret", "redis/cache", {"username": "app", "password": PW2})
    print(a.log())

"""``tasksaga-token``: mint an HS256 bearer token for local use and tests.

The secret comes from TASKSAGA_AUTH_HS256_SECRET, or from the local stack's
``.stack/local-secrets.json`` (made by `make demo` / the tests). Production tokens come from
your identity provider (RS256/ES256, verified with its public keys or JWKS), never from here.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from tasksaga.api.identity import mint_token


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--tenant", default="default")
    parser.add_argument("--subject", default="local-user")
    parser.add_argument("--role", action="append", default=None,
                        help="a role (repeatable); default: tasksaga:operator")
    parser.add_argument("--lifetime", type=int, default=3600, help="seconds")
    parser.add_argument("--audience", default=os.environ.get("TASKSAGA_AUTH_AUDIENCE",
                                                             "tasksaga"))
    parser.add_argument("--issuer", default=os.environ.get("TASKSAGA_AUTH_ISSUER"))
    parser.add_argument("--secrets-file", type=Path, default=Path(".stack/local-secrets.json"))
    args = parser.parse_args(argv)
    secret = os.environ.get("TASKSAGA_AUTH_HS256_SECRET")
    if not secret and args.secrets_file.exists():
        secret = json.loads(args.secrets_file.read_text()).get("TASKSAGA_AUTH_HS256_SECRET")
    if not secret:
        print("set TASKSAGA_AUTH_HS256_SECRET, or run `make demo` once to create the local "
              "secrets in .stack/local-secrets.json", file=sys.stderr)
        return 2
    roles = args.role if args.role is not None else ["tasksaga:operator"]
    print(mint_token(secret, subject=args.subject, tenant=args.tenant, roles=roles,
                     audience=args.audience, lifetime_s=args.lifetime, issuer=args.issuer))
    return 0


if __name__ == "__main__":
    sys.exit(main())

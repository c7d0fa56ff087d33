"""`create-rq-users`: the bench's own Redis ACL user (Frappe's command, Frappe's config keys)."""

from __future__ import annotations

import os
import sys

import typer

from . import state


def create_rq_users(
    print_aclfile: bool = typer.Option(
        False, "--print-aclfile", help="Print every user of the Redis as aclfile lines (passwords hashed) on stdout."
    ),
    set_admin_password: bool = typer.Option(
        False,
        "--set-admin-password",
        help="Also give the admin user (--admin-user) a new random password, printed once.",
    ),
    admin_user: str = typer.Option(
        None, "--admin-user", help="The Redis user that runs ACL SETUSER (default: redis_queue's user, else default)."
    ),
    new_password: bool = typer.Option(
        False, "--new-password", help="Give the bench's user a new password (default: keep the one in the config)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print {username, created, saved_to, warnings, ...}."),
) -> None:
    """Create the bench's own Redis ACL user, limited to its keys and channels, and log the bench in as it.

    The user `bench-jobs-<bench_id>` reaches only the bench's own keys and channels and runs no admin command
    (no CONFIG, FLUSHALL, KEYS, ACL SETUSER, CLIENT KILL, ...); `use_rq_auth = true`, `rq_username` and
    `rq_password` go into sites/common_site_config.toml (made readable by its owner only), and every process
    of the bench then logs in as that user. Run again to update the user's rules; it
    keeps the password. Restart the bench's processes afterwards. The admin's credentials are redis_queue's,
    or --admin-user and $BENCH_JOBS_REDIS_ADMIN_PASSWORD. Where Redis has an aclfile, the users are saved to
    it (ACL SAVE); else --print-aclfile prints one.

    Examples:

    \b
      bench-jobs create-rq-users --set-admin-password
      bench-jobs create-rq-users --print-aclfile > /etc/redis/users.acl
      BENCH_JOBS_REDIS_ADMIN_PASSWORD=... bench-jobs create-rq-users --admin-user admin
    """
    from ..ops.rq_users import ADMIN_PASSWORD_ENV
    from ..ops.rq_users import create_rq_users as create

    found = state.bench()
    result = create(
        found,
        admin_user=admin_user,
        admin_password=os.environ.get(ADMIN_PASSWORD_ENV) or None,
        new_password=new_password,
        set_admin_password=set_admin_password,
    )
    if as_json:
        state.print_json(
            {
                "username": result.username,
                "created": result.created,
                "new_password": result.new_password,
                "config_file": result.config_file,
                "saved_to": result.saved_to,
                "acl_line": result.acl_line,
                "aclfile": result.aclfile if print_aclfile else None,
                "admin_password": result.admin_password,
                "warnings": result.warnings,
            }
        )
        return
    # With --print-aclfile stdout is the aclfile alone; what was done goes to stderr.
    out = state.error_console() if print_aclfile else state.console()
    verb = "Created" if result.created else "Updated"
    out.print(f"{verb} the Redis ACL user {result.username} (its keys and channels only, no admin command).")
    out.print(
        f"Wrote use_rq_auth, rq_username{', rq_password (new)' if result.new_password else ''} into "
        f"{result.config_file} (owner-only). Restart the bench's processes to log in as {result.username}.",
        markup=False,
    )
    if result.saved_to:
        out.print(f"Saved the users to Redis's aclfile {result.saved_to}.", markup=False)
    if result.admin_password:
        out.print(
            f"New password of the admin user: {result.admin_password}\n"
            "Keep it (e.g. in $BENCH_JOBS_REDIS_ADMIN_PASSWORD for the next create-rq-users); it is not stored.",
            markup=False,
        )
    for warning in result.warnings:
        out.print(f"Warning: {warning}", markup=False, soft_wrap=True)
    if print_aclfile:
        sys.stdout.write("".join(line + "\n" for line in result.aclfile))

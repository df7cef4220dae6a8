"""Where the local clusters keep their data, sockets and key files.

The `postgres` OS user runs every server, so the base directory must be one it
can reach. The rule, shared with deploy/local/cluster.sh:

1. `$SHIELDX_STATE_DIR` if set;
2. else `<repo>/.local` if the postgres user can traverse the repository's path;
3. else `/var/lib/shieldx/<repo basename>-<first 8 hex digits of sha256(repo path)>`.
"""

from __future__ import annotations

import hashlib
import os
import pwd
import stat
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
OSUSER = "postgres"
SHARED_BASE = Path("/var/lib/shieldx")


def traversable_by(path: Path, user: str = OSUSER) -> bool:
    """Whether `user` has search permission on `path` and on every directory above it."""
    try:
        pw = pwd.getpwnam(user)
    except KeyError:
        return False
    if pw.pw_uid == 0:
        return True
    groups = {pw.pw_gid, *os.getgrouplist(user, pw.pw_gid)}
    path = path.resolve()
    for directory in (path, *path.parents):
        try:
            st = directory.stat()
        except OSError:
            return False
        if st.st_uid == pw.pw_uid:
            bit = stat.S_IXUSR
        elif st.st_gid in groups:
            bit = stat.S_IXGRP
        else:
            bit = stat.S_IXOTH
        if not st.st_mode & bit:
            return False
    return True


def state_dir(root: Path = ROOT) -> Path:
    """The base directory of the local clusters' state (not created here)."""
    override = os.environ.get("SHIELDX_STATE_DIR")
    if override:
        return Path(override)
    if traversable_by(root):
        return root / ".local"
    digest = hashlib.sha256(str(root).encode()).hexdigest()[:8]
    return SHARED_BASE / f"{root.name}-{digest}"

"""What the HA test modules share: the `ha` mark, and a skip naming the Debian packages the Patroni
cluster needs when they are missing (test_ha_failover.py, test_ha_keys.py: `pytestmark = HA`)."""

from __future__ import annotations

import pytest

from shieldx_local.processes import missing_binaries

_MISSING = missing_binaries()

HA = [
    pytest.mark.ha,
    pytest.mark.skipif(bool(_MISSING), reason=f"needs Debian packages {_MISSING} (installed by `make deps`)"),
]

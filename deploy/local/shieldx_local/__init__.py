"""The developer harness: local clusters the tests and benchmarks run against.

Not part of the `shieldx` distribution; `deploy/local` is put on the import path
by pytest (`pythonpath` in pyproject.toml) and by the Makefile (`PYTHONPATH`).

  state      where the clusters keep their files (`state_dir()`)
  processes  running programs as the postgres user, polling, /proc
  layout     one HA cluster's files and ports
  cluster    the Patroni/etcd/HAProxy/pgBackRest cluster: up, down, kill, switch over, back up
  private    throwaway clusters on claimed free ports, and an API server against them
  workload   a keyed, retrying client workload through the API, and its ledger checks
  drill      the restore drill: latest backup -> scratch node -> reconcile() and verify()
  keys       keys on every node: payment/audit rotation (install everywhere, then activate), keyrings following
             the subject key ratchet and retired keys
  observe    the local Prometheus, Alertmanager and postgres_exporter
  cli        `python -m shieldx_local ha up|down|status|switchover|backup|restore-drill|keys`, `observe up|down|status`
"""

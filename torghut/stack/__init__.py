"""The local stack: real Kafka (KRaft), MinIO and a schema registry on loopback.

`torghut stack up` starts them as background processes with their own data dir, logs and
free ports, and writes a state file that `status`, `down` and the tests read.
"""

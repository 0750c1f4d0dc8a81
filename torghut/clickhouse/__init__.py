"""ClickHouse: one client interface, two engines (embedded chdb, a real server), one DDL."""

"""`torghut backfill`: Alpaca's historical trades and quotes into the ClickHouse tables through
the TA job's validation and indicators, resumable, ending with a seed for the live job."""

"""The PyFlink technical-analysis job: raw Kafka topics -> 1 s bars, signals, status."""

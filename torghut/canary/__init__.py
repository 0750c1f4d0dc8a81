"""The canary: how far the TA job's output is behind its raw input, per symbol, and whether
the raw input itself still moves (docs/design.md, "The canary"; docs/runbooks.md, "Reading
the canary"). `book` is the pure bookkeeping; `runner` the Kafka loop and the metrics; `cli`
is `torghut canary`."""

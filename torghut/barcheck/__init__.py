"""The minute check: the job's final 1 s bars rolled up to the minute against Alpaca's own
minute bars (docs/design.md, "The minute check"). `logic` is the pure roll-up, comparison
and completeness bookkeeping; `runner` the Kafka loop, metrics and output; `cli` is
`torghut check-bars`."""

"""The peers of ``torghut bench peers``: the same backlog, 1 s bars and indicators computed by
other Python stream processors (Quix Streams, Bytewax) and by a bare loop over the project's
kernels. Each runs as its own process (the Quix and Bytewax ones in the peers venv,
``make bench-peers-setup``) and writes a result file (:mod:`.common`)."""

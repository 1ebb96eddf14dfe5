"""Benchmarks: four ways to wait for an OpenAI run, side by side on one workload.

``python -m bench --quick`` (``make bench-quick``), ``--full`` (``make bench``) and ``--webhooks``
(``make bench-webhooks``, the figures issue 5 asks for). Everything runs against the local
simulator on 127.0.0.1 with a private Redis and a dedicated database; results go to
``docs/bench/``. One module per job: see each module's docstring.
"""

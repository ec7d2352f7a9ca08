"""The benchmark of the lab against reference mail servers on the same machine (issue 8).

In: the command line of ``python bench/run.py`` (or ``python -m bench``). Out: the
results as a markdown-like table on stdout, JSON (``--out``) and a plot (``--plot``).

* the systems compared: ``systems`` (smtp-sink, the aiosmtpd sinks of ``sinks``),
  ``postfix`` (a throw-away Postfix, its master.cf from ``postfix_conf``), ``lab`` (its
  store from ``store``: SQLite, or a fresh PostgreSQL database per lab);
* the measurement: ``procs`` (process control, waits), ``probes`` (CPU, RSS, the
  machine), ``load`` (smtp-source or ``loadgen``), ``measure`` (a run's settings and one
  load run), ``rates`` and ``drains``;
* the report: ``results`` (the typed shapes), ``targets``, ``report``, ``plot``;
* the command line: ``cli`` (``run.py`` and ``__main__`` only start it); ``ab``,
  ``profile_lab`` and ``scaleout`` (the lab in 1, 2 and 4 processes on one PostgreSQL)
  are tools of their own built on the same parts.
"""

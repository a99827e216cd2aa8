"""Parts of the partner-API simulator (``api_poller_dev.simulator`` is the entry point and app builder).

One module per concern: ``config`` (what an instance does), ``dataset`` (the deterministic records),
``faults`` (latency and injected failures), ``stats`` (``/stats`` counters), ``state`` (the app keys
holding all mutable state), ``params`` (query validation), ``auth`` (credential checks and the OAuth2
token endpoint) with ``auth_tokens`` (issued tokens and their expiry), ``data_endpoint`` (what every
data request goes through), ``paginators`` (one endpoint per pagination style), ``admin``
(appending records between runs), ``threaded`` (serving an app from a background thread) and
``recording`` (a server that records what reaches it, for credential-scope tests).
"""

"""Talking to Sync: the HTTP client, its error mapping, backoff and polling policies, webhooks.

``client`` (:class:`Client` with ``batches`` and ``generations``), ``errors`` (status → exception, messages
that say what to do), ``backoff`` (:class:`RetryPolicy`, :class:`PollPolicy`, Retry-After) and ``webhooks``
(signatures and notification parsing).

Imports: ``_errors``, ``_files``, ``_wire``.
"""

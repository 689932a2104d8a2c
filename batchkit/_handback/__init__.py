"""The hand-back: what a finished build gives back to the people who asked for it.

The finished videos fetched into the user's storage (``fetch``: names from ``naming``, a resumable ledger in
``ledger``, local folders and fsspec URLs in ``stores``, one verified HTTP download in ``download``), and a
review page to look at every request and decide what goes out and what is made again (``review``, ``poster``,
``decisions``), and the results table handed back in the shapes asked for (``handback``: long or wide, a
filled-in copy of the source). It imports only the layers below it: the error tree, findings, durable file steps, the API
client (for renewing expired links) and the wire models; the sandbox, ``run`` and the CLI sit above it.
"""

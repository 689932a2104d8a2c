"""The hand-back: what a finished build gives back to the people who asked for it.

The finished videos fetched into the user's storage (``fetch``), and a review page to look at every request
and decide what goes out and what is made again (``review``, ``poster``, ``decisions``).
"""

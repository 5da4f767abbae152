"""The work behind the ``gateway`` command line: plain functions that take and return values.

One module per command (``check``, ``explain``, ``importer``, ``coverage``), plus
``urls`` for what they share: turning what a person typed into a request, and a
canonical URL back into a rule's ``from``. Everything here answers through
``gateway.decide`` and the map's own matcher, so the command line can never
disagree with the server. No click and no Flask here: ``gateway.cli`` renders.
"""

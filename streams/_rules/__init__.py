"""Private parts of the rule engine: parsing, matchers, templates, trends and alert state.

The public surface is :mod:`streams.rules`; nothing outside it imports these.
"""

__all__: list[str] = []

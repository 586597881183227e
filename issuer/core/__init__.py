"""The issuing core both fronts drive: the authority, configuration, templates, the RFC 7591
rules, statements, API tokens, errors, clock and encodings."""

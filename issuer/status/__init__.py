"""Statement status: the Token Status List format and the registry of lists and indices."""

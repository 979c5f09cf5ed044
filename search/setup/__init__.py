"""A study before Ray starts: its settings, directory, journal, provenance, data and the
checks that refuse what cannot work. Imports ``search.methods`` only."""

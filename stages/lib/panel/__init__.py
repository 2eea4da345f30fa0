"""Collections of series (panels): loading them, the competition protocol, scores over many series."""

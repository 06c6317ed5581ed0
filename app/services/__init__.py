"""Domain services: the only place where inventory rules live. Receivers and views call these."""

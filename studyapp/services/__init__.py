"""Services: every write to the study's data goes through a function here."""

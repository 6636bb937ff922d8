"""What a fit says: gradient scores, summaries, checks, test helpers, figures and maps."""

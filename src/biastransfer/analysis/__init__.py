"""Analysis helpers every experiment kind shares: aggregation over seeds, paired differences, number formats."""

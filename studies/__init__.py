"""Reading results: the study directory, trials table, Pareto front, hypervolume, report, export."""

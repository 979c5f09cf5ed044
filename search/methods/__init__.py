"""The search's methods as pure rules: Optuna samplers, the MO-ASHA decision, cost caps as
constraints. No Ray, no study directory: the bottom floor of ``search``."""

"""The search: how the next configuration is chosen.

``study`` asks and tells Optuna (samplers, pruning, restoring a killed search's trials); ``trial_reuse``
answers a repeated point from its evaluated twin; ``trial_seeds`` gives each trial its own sampler stream;
``nested`` runs one inner study per outer subject (nested LOSO selection). The sweep driver only asks and
tells through these; it does not know how a point is chosen.
"""

"""The sweep: running units and the order of events.

``driver`` is the sweep's order of events (open the store, plan, place units, finalise) over its two
collaborators, the search and the store; ``work_queue`` orders units, ``pool`` keeps the elastic Ray actor
pool, ``executor`` trains one unit inside an actor and logs it, ``progress`` prints, ``lease`` keeps two
drivers off one sweep.
"""

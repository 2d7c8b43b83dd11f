"""Static models distilled from a transformer: the texts (:mod:`.corpus`), the pruned vocabulary (:mod:`.vocab`),
the teacher's vectors (:mod:`.features`), the held-out check (:mod:`.validation`), the shipped int8 file
(:mod:`.pack`), and the recipe that runs them in order, resumably (:mod:`.pipeline`)."""

"""Model compression for tables (Bucila et al. 2006): ensemble selection, the model library,
MUNGE and the encoder import no torch; only `mimic` and `compress` (which trains the mimic
network through the distillation engine) do."""

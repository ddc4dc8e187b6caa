from sb3_lecture_ppo.population.population import Population, PopulationError

__all__ = ["Population", "PopulationError"]

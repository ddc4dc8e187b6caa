from sb3_lecture_ppo.common.policies import LectureActorCriticPolicy

MlpPolicy = LectureActorCriticPolicy

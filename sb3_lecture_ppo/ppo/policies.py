from sb3_lecture_ppo.common.policies import (
    LectureActorCriticCnnPolicy,
    LectureActorCriticPolicy,
    LectureMultiInputActorCriticPolicy,
)

MlpPolicy = LectureActorCriticPolicy
CnnPolicy = LectureActorCriticCnnPolicy
MultiInputPolicy = LectureMultiInputActorCriticPolicy

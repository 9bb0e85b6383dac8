from stable_baselines3.common.policies import ActorCriticCnnPolicy, ActorCriticPolicy, MultiInputActorCriticPolicy

# Stochastic actor-critic policies: the actor gives the log-probabilities the importance weights need, the value head
# is the learned baseline V(s) (baseline="value").
MlpPolicy = ActorCriticPolicy
CnnPolicy = ActorCriticCnnPolicy
MultiInputPolicy = MultiInputActorCriticPolicy

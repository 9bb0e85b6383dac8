from sb3_pgnotes.reinforce.policies import CnnPolicy, MlpPolicy, MultiInputPolicy
from sb3_pgnotes.reinforce.reinforce import Reinforce

__all__ = ["CnnPolicy", "MlpPolicy", "MultiInputPolicy", "Reinforce"]

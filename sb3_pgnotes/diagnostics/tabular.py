"""
Episodic tabular MDPs whose policy gradient is known exactly, for checking estimators against it.

The observation is the state index (``Discrete(n_states + 1)``, the last index being the absorbing terminal state),
which SB3 one-hot encodes, so an actor with ``net_arch=dict(pi=[])`` is a linear softmax over states. Every
episode terminates within ``horizon`` steps. The horizon is part of the task (a termination, not a time-limit
truncation) and the time index is not observed: the exact objective accounts for time explicitly, and the
REINFORCE estimator does not need the Markov property (``docs/theory.md``, "The policy-gradient estimator"), so it
stays unbiased on this non-stationary problem.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.logger import Logger

from sb3_pgnotes.common.buffers import EpisodeBatch
from sb3_pgnotes.common.returns import reward_to_go
from sb3_pgnotes.reinforce import Reinforce


def sample_categorical(rng: np.random.Generator, probs: np.ndarray) -> np.ndarray:
    """
    :param rng: Random generator
    :param probs: One distribution per row, shape (n, k)
    :return: One index per row, shape (n,)
    """
    cumulative = np.cumsum(probs, axis=-1)
    draws = (rng.random(len(probs))[:, None] > cumulative).sum(axis=-1)
    return np.minimum(draws, probs.shape[-1] - 1)


class TabularMDP(gym.Env):
    """
    An episodic tabular MDP given by its tables, with the exact objective and policy gradient by dynamic programming.

    :param initial: Initial distribution over the non-terminal states, (n_states,)
    :param transitions: ``transitions[s, a, s']`` over the non-terminal states and the terminal one (last column),
        (n_states, n_actions, n_states + 1)
    :param rewards: ``rewards[s, a]``, (n_states, n_actions)
    :param horizon: Longest episode: it terminates at this step
    """

    def __init__(self, initial: np.ndarray, transitions: np.ndarray, rewards: np.ndarray, horizon: int) -> None:
        super().__init__()
        self.initial = np.asarray(initial, dtype=np.float64)
        self.transitions = np.asarray(transitions, dtype=np.float64)
        self.rewards = np.asarray(rewards, dtype=np.float64)
        self.horizon = horizon
        self.n_states, self.n_actions = self.rewards.shape
        self.terminal = self.n_states
        self.observation_space = spaces.Discrete(self.n_states + 1)
        self.action_space = spaces.Discrete(self.n_actions)
        self.state, self.t = 0, 0

    @classmethod
    def random(cls, n_states: int, n_actions: int, horizon: int, reward_offset: float, seed: int) -> "TabularMDP":
        """
        :param n_states: Number of non-terminal states
        :param n_actions: Number of actions
        :param horizon: Longest episode
        :param reward_offset: Added to every reward, which is otherwise uniform in [0, 1)
        :param seed: Seed of the tables
        :return: An MDP with Dirichlet initial and transition distributions (the terminal state among the targets)
        """
        rng = np.random.default_rng(seed)
        transitions = rng.dirichlet(np.ones(n_states + 1), size=(n_states, n_actions))
        rewards = reward_offset + rng.random((n_states, n_actions))
        return cls(rng.dirichlet(np.ones(n_states)), transitions, rewards, horizon)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[int, dict]:
        """:return: A state drawn from the initial distribution, and no info"""
        super().reset(seed=seed)
        self.state, self.t = int(sample_categorical(self.np_random, self.initial[None])[0]), 0
        return self.state, {}

    def step(self, action: int) -> tuple[int, float, bool, bool, dict]:
        """:return: The next state, the reward, whether the terminal state or the horizon is reached, False, no info"""
        reward = float(self.rewards[self.state, int(action)])
        self.state = int(sample_categorical(self.np_random, self.transitions[self.state, int(action)][None])[0])
        self.t += 1
        return self.state, reward, self.state == self.terminal or self.t >= self.horizon, False, {}

    def sample_episodes(self, probs: np.ndarray, n_episodes: int, rng: np.random.Generator) -> EpisodeBatch:
        """
        Sample whole episodes, all advancing together one time index at a time (much faster than stepping the env).

        :param probs: Per non-terminal state action probabilities, (n_states, n_actions)
        :param n_episodes: Number of episodes
        :param rng: Random generator
        :return: The episodes, stored flat (episode 0's steps, then episode 1's, ...), all terminated
        """
        state = sample_categorical(rng, np.broadcast_to(self.initial, (n_episodes, self.n_states)))
        alive = np.ones(n_episodes, dtype=bool)
        states, actions, rewards, alives = [], [], [], []
        for _ in range(self.horizon):
            action = sample_categorical(rng, probs[state])
            next_state = sample_categorical(rng, self.transitions[state, action])
            states.append(state)
            actions.append(action)
            rewards.append(self.rewards[state, action])
            alives.append(alive)
            alive = alive & (next_state != self.terminal)
            state = np.where(alive, next_state, state)
        keep = np.stack(alives, axis=1)  # (n_episodes, horizon): episode-major order once masked

        def flat(per_step: list[np.ndarray]) -> np.ndarray:
            return np.stack(per_step, axis=1)[keep]

        return EpisodeBatch(
            observations=flat(states).astype(np.int64),
            actions=flat(actions).astype(np.int64),
            rewards=flat(rewards).astype(np.float32),
            log_probs=np.zeros(int(keep.sum()), dtype=np.float32),
            episode_lengths=keep.sum(axis=1).astype(np.int64),
            truncated=np.zeros(n_episodes, dtype=bool),
            terminal_observations=[None] * n_episodes,
        )

    def _tables(self) -> tuple[th.Tensor, th.Tensor, th.Tensor]:
        initial, transitions, rewards = (
            th.as_tensor(x, dtype=th.float64) for x in (self.initial, self.transitions, self.rewards)
        )
        return initial, transitions[:, :, : self.n_states], rewards

    def expected_return(self, probs: th.Tensor, gamma: float) -> th.Tensor:
        """
        Exact objective ``J = E[sum_t gamma^t r_t]`` by the forward recursion of the state distribution over time.

        :param probs: Per non-terminal state action probabilities, (n_states, n_actions), float64
        :param gamma: Discount factor
        :return: Scalar J, differentiable with respect to ``probs``
        """
        initial, transitions, rewards = self._tables()
        occupancy = initial  # probability of being in each non-terminal state at time t (mass lost = episode over)
        objective = th.zeros((), dtype=th.float64)
        for t in range(self.horizon):
            objective = objective + gamma**t * th.einsum("s,sa,sa->", occupancy, probs, rewards)
            occupancy = th.einsum("s,sa,sax->x", occupancy, probs, transitions)
        return objective

    def policy_gradient_surrogate(self, probs: th.Tensor, gamma: float, discount_decisions: bool = True) -> th.Tensor:
        """
        ``sum_t w_t sum_s d_t(s) sum_a pi(a|s) Q_t(s, a)`` with the occupancies ``d_t`` and the discounted action
        values to go ``Q_t`` (backward recursion over the remaining horizon) held constant: its gradient is the
        expectation of the reward-to-go estimator.

        With ``w_t = gamma^t`` (``discount_decisions``, discount option 2) that is the policy gradient theorem, the
        exact gradient of :meth:`expected_return`. With ``w_t = 1`` it is the expectation of discount option 1, which
        is not the gradient of any objective when ``gamma < 1``.

        :param probs: Per non-terminal state action probabilities, (n_states, n_actions), float64
        :param gamma: Discount factor
        :param discount_decisions: Weight decision t by ``gamma^t``
        :return: Scalar surrogate, differentiable with respect to ``probs``
        """
        occupancies, action_values = self.occupancies_and_action_values(probs.detach(), gamma)
        weights = th.tensor([gamma**t if discount_decisions else 1.0 for t in range(self.horizon)], dtype=th.float64)
        return th.einsum("t,ts,sa,tsa->", weights, occupancies, probs, action_values)

    def occupancies_and_action_values(self, probs: th.Tensor, gamma: float) -> tuple[th.Tensor, th.Tensor]:
        """
        :param probs: Per non-terminal state action probabilities, (n_states, n_actions), float64
        :param gamma: Discount factor
        :return: The occupancies ``d_t(s)``, the probability that the episode is in state s at time t (forward
            recursion; the mass lost is the episodes over), (horizon, n_states), and the discounted action values to
            go ``Q_t(s, a) = E[sum_{t'>=t} gamma^(t'-t) r_t' | s_t = s, a_t = a]`` (backward recursion over the
            remaining horizon), (horizon, n_states, n_actions)
        """
        initial, transitions, rewards = self._tables()
        occupancies = [initial]
        for _ in range(self.horizon - 1):
            occupancies.append(th.einsum("s,sa,sax->x", occupancies[-1], probs, transitions))
        action_values = []
        value_to_go = th.zeros(self.n_states, dtype=th.float64)
        for _ in range(self.horizon):
            action_values.append(rewards + gamma * th.einsum("sax,x->sa", transitions, value_to_go))
            value_to_go = (probs * action_values[-1]).sum(dim=-1)
        return th.stack(occupancies), th.stack(action_values[::-1])

    def time_optimal_baseline(self, probs: th.Tensor, gamma: float, score_norms: th.Tensor) -> th.Tensor:
        """
        The exact per-time-step optimal baseline ``B_t = E[|psi_t|^2 G_t] / E[|psi_t|^2]`` (``docs/theory.md``,
        "Baselines"), which :class:`~sb3_pgnotes.common.gradients.TimeOptimalBaseline` estimates from samples:
        ``E[|psi_t|^2 G_t] = sum_{s,a} d_t(s) pi(a|s) |psi(s, a)|^2 Q_t(s, a)``.

        :param probs: Per non-terminal state action probabilities, (n_states, n_actions), float64
        :param gamma: Discount factor of the reward-to-go
        :param score_norms: ``|psi(s, a)|^2`` per state and action (:func:`linear_softmax_score_norms`)
        :return: ``B_t`` per time index, (horizon,); 0 at times no episode reaches
        """
        occupancies, action_values = self.occupancies_and_action_values(probs, gamma)
        weights = th.einsum("ts,sa,sa->tsa", occupancies, probs, score_norms)
        numerator, denominator = (weights * action_values).sum(dim=(1, 2)), weights.sum(dim=(1, 2))
        return th.where(denominator > 0, numerator / denominator.clamp_min(th.finfo(th.float64).tiny), 0.0)


def linear_softmax_probs(weight: th.Tensor, bias: th.Tensor, n_states: int) -> th.Tensor:
    """
    :param weight: The weight of the actor head of a policy with ``net_arch=dict(pi=[])`` on one-hot states: the
        logits of state s are ``weight[:, s] + bias``
    :param bias: The head's bias
    :param n_states: Number of non-terminal states
    :return: Per non-terminal state action probabilities, (n_states, n_actions), float64, differentiable
    """
    return th.softmax(weight.double().T + bias.double(), dim=-1)[:n_states]


def linear_softmax_score_norms(probs: th.Tensor) -> th.Tensor:
    """
    :param probs: Per non-terminal state action probabilities of a linear softmax over one-hot states (see
        :func:`linear_softmax_probs`), (n_states, n_actions)
    :return: ``|grad log pi(a|s)|^2`` with respect to the head's weight and bias (:func:`linear_softmax_scores`) for
        every state and action, (n_states, n_actions), float64
    """
    n_states, n_actions = probs.shape
    states, actions = np.divmod(np.arange(n_states * n_actions), n_actions)
    scores = linear_softmax_scores(probs.detach().cpu().double().numpy(), states, actions, n_states + 1)
    return th.as_tensor(np.square(scores).sum(axis=1).reshape(n_states, n_actions))


def linear_softmax_scores(probs: np.ndarray, observations: np.ndarray, actions: np.ndarray, n_observations: int) -> np.ndarray:
    """
    :param probs: Per non-terminal state action probabilities (see :func:`linear_softmax_probs`), (n_states, n_actions)
    :param observations: Per-step state indices
    :param actions: Per-step actions
    :param n_observations: Size of the one-hot observation
    :return: Per-step ``grad log pi(a_t|s_t)`` with respect to the head's weight and bias, flattened as
        :func:`exact_policy_gradient` orders them, (n_steps, n_actions * (n_observations + 1))
    """
    steps = np.arange(len(actions))
    centred = -probs[observations]
    centred[steps, actions] += 1
    weight = np.zeros((len(actions), probs.shape[1], n_observations))
    weight[steps, :, observations] = centred
    return np.concatenate([weight.reshape(len(actions), -1), centred], axis=1)


def exact_policy_gradient(mdp: TabularMDP, action_net: th.nn.Linear, gamma: float) -> th.Tensor:
    """
    :param mdp: The MDP
    :param action_net: The actor head (see :func:`linear_softmax_probs`)
    :param gamma: Discount factor of the objective
    :return: ``grad J`` with respect to the head's weight and bias, flattened in that order, float64
    """
    weight = action_net.weight.detach().double().requires_grad_(True)
    bias = action_net.bias.detach().double().requires_grad_(True)
    objective = mdp.expected_return(linear_softmax_probs(weight, bias, mdp.n_states), gamma)
    grad_weight, grad_bias = th.autograd.grad(objective, [weight, bias])
    return th.cat([grad_weight.flatten(), grad_bias])


def tabular_reinforce(mdp: TabularMDP, baseline: str, seed: int = 0, **kwargs: Any) -> Reinforce:
    """
    :param mdp: The MDP
    :param baseline: Reinforce's baseline
    :param seed: Seed of the model and of its actor's weights (normal, standard deviation 0.5)
    :param kwargs: Further Reinforce arguments
    :return: Reinforce as :func:`reinforce_update_statistics` needs it: a linear softmax actor trained by plain SGD
        (learning rate 0.1), gamma 1, no standardisation
    """
    model = Reinforce(
        "MlpPolicy",
        mdp,
        baseline=baseline,
        normalize_advantage=False,
        gamma=1.0,
        learning_rate=0.1,
        policy_kwargs=dict(net_arch=dict(pi=[], vf=[]), optimizer_class=th.optim.SGD, ortho_init=False),
        seed=seed,
        **kwargs,
    )
    weight = model.policy.action_net.weight
    with th.no_grad():
        weight.copy_(th.randn(weight.shape, generator=th.Generator().manual_seed(seed)) * 0.5)
    return model


@dataclass
class UpdateStatistics:
    """
    The spread of an algorithm's update direction over batches drawn from one fixed policy.

    :param total_variance: Trace of the covariance of one batch's update direction
    :param cosine: Cosine between the mean direction and the exact policy gradient
    :param norm_ratio: Norm of the mean direction over the exact gradient's
    :param squared_error: Squared distance between the mean direction and the exact gradient: for an unbiased
        estimator its expectation is ``total_variance / n_batches``, a bias adds its squared norm
    """

    total_variance: float
    cosine: float
    norm_ratio: float
    squared_error: float

    @classmethod
    def of(cls, directions: th.Tensor, exact: th.Tensor) -> "UpdateStatistics":
        """
        :param directions: One update direction per batch, (n_batches, n_parameters), float64
        :param exact: The exact gradient
        :return: Their statistics
        """
        mean = directions.mean(0)
        return cls(
            total_variance=float(directions.var(0).sum()),
            cosine=float(th.nn.functional.cosine_similarity(mean, exact, dim=0)),
            norm_ratio=float(mean.norm() / exact.norm()),
            squared_error=float((mean - exact).square().sum()),
        )


def reinforce_update_statistics(
    model: Reinforce, mdp: TabularMDP, n_episodes: int, n_batches: int, rng: np.random.Generator, warm_up: int = 0
) -> UpdateStatistics:
    """
    Train ``model`` once on each of ``n_batches`` batches of ``n_episodes`` episodes drawn from its current policy,
    restoring the policy after each update, and compare the update directions with the exact gradient.

    The model's actor must be a linear softmax over one-hot states (``net_arch=dict(pi=[])``) trained by plain SGD
    (``optimizer_class=th.optim.SGD``): one update then moves it by ``learning_rate * g``, with g the estimator. What
    the model carries from one update to the next (the optimal baseline's pool) is kept, as in training.

    :param model: A Reinforce model on ``mdp`` (gamma is the model's)
    :param mdp: The MDP
    :param n_episodes: Episodes per batch
    :param n_batches: Batches measured
    :param rng: Random generator of the episodes
    :param warm_up: Updates made (and undone) before the measured ones, e.g. to fill the optimal baseline's pool
    :return: The statistics of the direction g
    """
    if getattr(model, "_logger", None) is None:
        model.set_logger(Logger(folder=None, output_formats=[]))
    action_net = model.policy.action_net
    assert isinstance(action_net, th.nn.Linear)
    params = [action_net.weight, action_net.bias]
    start = [param.detach().clone() for param in params]
    probs = linear_softmax_probs(action_net.weight, action_net.bias, mdp.n_states).detach().numpy()
    directions = []
    for update in range(warm_up + n_batches):
        batch = mdp.sample_episodes(probs, n_episodes, rng)
        model.episode_batch = batch
        model.process_batch(batch, model.rollout_buffer)
        model.train()
        learning_rate = model.policy.optimizer.param_groups[0]["lr"]
        with th.no_grad():
            step = th.cat([(param - before).flatten() for param, before in zip(params, start, strict=True)])
            for param, before in zip(params, start, strict=True):
                param.copy_(before)
        if update >= warm_up:
            directions.append(step.double() / learning_rate)
    return UpdateStatistics.of(th.stack(directions), exact_policy_gradient(mdp, action_net, model.gamma))


def baseline_update_statistics(
    mdp: TabularMDP,
    action_net: th.nn.Linear,
    n_episodes: int,
    n_batches: int,
    rng: np.random.Generator,
    baseline: Callable[[EpisodeBatch], np.ndarray],
) -> UpdateStatistics:
    """
    The statistics of the reward-to-go estimator ``g = 1/N sum_i sum_t psi_t (G_t - b_t)`` (gamma 1, discount option
    1) with a baseline given from outside, e.g. an exact one from dynamic programming, computed directly from the
    scores: the update ``Reinforce`` would make with it (see :func:`reinforce_update_statistics`), in float64.

    :param mdp: The MDP
    :param action_net: The actor head of a linear softmax policy (see :func:`linear_softmax_probs`)
    :param n_episodes: Episodes per batch
    :param n_batches: Batches measured
    :param rng: Random generator of the episodes
    :param baseline: Per-step baselines of a batch
    :return: The statistics of g over the batches
    """
    probs = linear_softmax_probs(action_net.weight, action_net.bias, mdp.n_states).detach().numpy()
    directions = []
    for _ in range(n_batches):
        batch = mdp.sample_episodes(probs, n_episodes, rng)
        assert isinstance(batch.observations, np.ndarray)  # state indices
        scores = linear_softmax_scores(probs, batch.observations, batch.actions, mdp.n_states + 1)
        advantages = reward_to_go(batch.rewards, batch.episode_lengths, 1.0) - baseline(batch)
        directions.append(th.as_tensor(scores.T @ advantages / n_episodes))
    return UpdateStatistics.of(th.stack(directions), exact_policy_gradient(mdp, action_net, 1.0))

"""Recurrent caption decoder: image features initialise the state of an LSTM/GRU/RNN.

As in Show and Tell (Vinyals et al., 2015) the image conditions the language model once, at
the start; here it sets the initial hidden state (and cell state for an LSTM) of every layer
through a linear layer and tanh, a common variant (e.g. Karpathy's NeuralTalk). What it sets them
from is the grid summarised as one vector (``summary``, :mod:`captioner.models.summary`: by default
the mean over the grid cells, so the decoder's size follows the encoder's channels, not its grid).
Options, each off by default, add to that core:

- ``image_input_dim > 0``: a projection of the image is also fed with every word ("par-inject",
  Tanti et al., 2018), so the decoder can look at the image again for the second object.
- ``word_prior``: the word head (which words the image's captions use, trained by an auxiliary
  loss, see ``CaptionModel``) adds its log-probabilities to every step's logits, a product of the
  language model and a word detector (Hendricks et al., 2016, "Deep Compositional Captioning").
- ``attention_dim > 0``: every step attends over the encoder's grid cells (Show, Attend and Tell,
  Xu et al., 2015; scaled dot-product scores); the context goes with the hidden state to the
  logits. A step's query is the hidden state before its word, so teacher forcing still runs the
  cell over a whole caption at once.
- ``head``: how the logits are formed. ``{"name": "plain"}`` is one linear layer;
  ``{"name": "word_classes", ...}`` is :class:`~captioner.models.word_classes.WordClasses`.
- ``bidirectional``: a second decoder of the same kind (``reverse``) learns the captions read
  backwards from the same features, so that a finished caption can be scored from its other end
  and the beam's candidates re-ranked (Wang et al., ACM MM 2016, "Image Captioning with Deep
  Bidirectional LSTMs"; :mod:`captioner.reranking`).

Figures for each option: benchmarks/README.md, "The demo recipe".
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Sequence
from dataclasses import replace

import torch
from torch import nn

from captioner.errors import CaptionerError
from captioner.models.attention import Attention
from captioner.models.state import DecoderState
from captioner.models.summary import GridSummary
from captioner.models.word_classes import WordClasses

CELLS: dict[str, type[nn.RNNBase]] = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}
# A head re-forms the logits: forward(logits, outputs, out, word_prior, previous, teacher_forcing),
# attention_bias(tokens, locations, out), settings(config, vocab) (its config with words as ids),
# fit(captions) (what it learns from the training captions first) and set_decoding(**settings).
HEADS: dict[str, type[nn.Module] | None] = {"plain": None, "word_classes": WordClasses}


def head_settings(head: dict, vocab) -> dict:
    """A ``model.decoder.head`` config as the decoder and checkpoints take it, given the vocabulary (a head
    that names words gets their ids)."""
    part = HEADS.get(head.get("name", "plain"))
    return part.settings(head, vocab) if part is not None else dict(head)


def _check_choices(cell: str, head: str, attended_dim: int, locations: int) -> None:
    if cell not in CELLS:
        raise CaptionerError(f"unknown decoder cell {cell!r}; choose one of: {', '.join(CELLS)}")
    if head not in HEADS:
        raise CaptionerError(f"unknown decoder head {head!r}; choose one of: {', '.join(HEADS)}")
    if attended_dim % locations:
        raise CaptionerError(f"feature size {attended_dim} does not split into {locations} locations")


class Decoder(nn.Module):
    """Image features (B, F) and words -> word logits, with the options of the module's text; built
    from plain keyword arguments (as checkpoints store them). ``locations``: the encoder's grid cells."""

    def __init__(
        self,
        vocab_size: int,
        feature_dim: int,
        embed_dim: int = 128,
        hidden_dim: int = 256,
        num_layers: int = 1,
        cell: str = "lstm",
        dropout: float = 0.0,
        image_input_dim: int = 0,
        word_prior: bool = False,
        attention_dim: int = 0,
        locations: int = 1,
        head: dict | None = None,
        bidirectional: bool = False,
        summary: str = "mean",
        cell_dim: int = 32,
    ):
        super().__init__()
        settings = {k: v for k, v in locals().items() if k not in ("self", "__class__", "bidirectional")}
        head = dict(head or {"name": "plain"})
        head_name = head.pop("name", "plain")
        _check_choices(cell, head_name, feature_dim if attention_dim else 0, locations)
        self.num_layers, self.hidden_dim, self.locations = num_layers, hidden_dim, locations
        self.num_states = 2 if cell == "lstm" else 1
        # The head first (it draws no random numbers): its parameters lead parameters(), so gradient
        # clipping sums the norms in the order checkpoints of every format version were trained with.
        self.head_name, part = head_name, HEADS[head_name]
        self.head = part(vocab_size, hidden_dim, sees_image=bool(word_prior or attention_dim),
                         attends=bool(attention_dim), **head) if part else None
        self.summary = GridSummary(feature_dim, locations, summary, cell_dim)
        self.init_state = nn.Linear(self.summary.dim, self.num_states * num_layers * hidden_dim)
        self.image_input = nn.Linear(self.summary.dim, image_input_dim) if image_input_dim else None
        location_dim = feature_dim // locations if attention_dim else 0
        self.attention = Attention(location_dim, hidden_dim, attention_dim) if attention_dim else None
        self.embed = nn.Embedding(vocab_size, embed_dim)
        self.rnn = CELLS[cell](embed_dim + image_input_dim, hidden_dim, num_layers, batch_first=True,
                               dropout=dropout if num_layers > 1 else 0.0)
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(hidden_dim + location_dim, vocab_size)
        self.word_head = nn.Linear(self.summary.dim, vocab_size)
        self.word_prior = word_prior
        self._initialise()
        # last: a forward-only decoder draws the same random numbers, and trains the same, as before
        self.reverse = Decoder(**settings) if bidirectional else None

    def _initialise(self) -> None:
        # The image starts as a small change to the state, so that learning the language
        # does not first teach the decoder to ignore a noisy state.
        with torch.no_grad():
            self.init_state.weight.mul_(0.1)
            if isinstance(self.rnn, nn.LSTM):
                # Forget-gate bias (Jozefowicz et al., 2015): the image in c0 lasts for
                # the many steps until the words that describe it.
                for name, bias in self.rnn.named_parameters():
                    if name.startswith("bias_"):
                        bias[self.hidden_dim : 2 * self.hidden_dim] = 1.0

    def initial_state(self, features: torch.Tensor) -> DecoderState:
        """features (B, F) -> the state before the first word."""
        batch = features.shape[0]
        image = self.summary(features)  # (B, D)
        flat = torch.tanh(self.init_state(image))  # (B, S * L * H)
        hidden = flat.view(batch, self.num_states, self.num_layers, self.hidden_dim).permute(1, 2, 0, 3)
        state = DecoderState(tuple(s.contiguous() for s in hidden))  # each (L, B, H)
        if self.image_input is not None:
            state = replace(state, image=torch.tanh(self.image_input(image)).unsqueeze(0))  # (1, B, P)
        if self.attention is not None:
            locations = features.view(batch, -1, self.locations).transpose(1, 2)  # (B, L, C): the grid cells
            keys = self.attention.keys(locations)  # (B, L, A)
            state = replace(state, locations=locations.transpose(0, 1), keys=keys.transpose(0, 1))  # (L, B, .)
        if self.word_prior:
            prior = nn.functional.logsigmoid(self.word_head(image).float())  # (B, V)
            state = replace(state, prior=prior.unsqueeze(0))
        return state

    def word_logits(self, features: torch.Tensor) -> torch.Tensor:
        """features (B, F) -> logits (B, V) of each word appearing in the image's captions."""
        return self.word_head(self.summary(features))

    def forward(self, features: torch.Tensor, tokens: torch.Tensor,
                image_index: torch.Tensor | None = None) -> torch.Tensor:
        """Teacher forcing: features (B, F), tokens (N, T) -> logits (N, T, V), formed as in training.

        ``image_index`` (N,) says which image each caption describes (by default caption i
        describes image i): the image's part of the state is computed once per image.
        """
        return self._teacher_forced(features, tokens, image_index, teacher_forcing=True)

    def decoding_logits(self, features: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Teacher forcing with the logits formed as ``step`` forms them: features (B, F), tokens (B, T) ->
        logits (B, T, V), to score a finished caption as decoding would (a re-ranker's view)."""
        return self._teacher_forced(features, tokens, None, teacher_forcing=False)

    def step(self, tokens: torch.Tensor, state: DecoderState) -> tuple[torch.Tensor, DecoderState]:
        """One step for decoding: tokens (B,) -> logits (B, V) and the next state."""
        return self._step(tokens, state, teacher_forcing=False)

    def fit_head(self, captions: Iterable[Sequence[int]]) -> None:
        """Let the head learn what it takes from the training captions (token ids) before training."""
        if self.head is not None:
            self.head.fit(captions)

    def set_head_decoding(self, **settings) -> None:
        """Change how the head forms decoding's logits, for the settings it lets a trained model change
        (:meth:`WordClasses.set_decoding`); a setting that is None keeps the model's."""
        given = {name: value for name, value in settings.items() if value is not None}
        if not given:
            return
        allowed = inspect.signature(self.head.set_decoding).parameters if hasattr(self.head, "set_decoding") else {}
        unknown = [name for name in given if name not in allowed]
        if unknown:
            has = f" (it has: {', '.join(allowed)})" if allowed else ""
            raise CaptionerError(f"head.{unknown[0]}: the {self.head_name} head of this model has no such decoding "
                                 f"setting{has}")
        self.head.set_decoding(**given)

    def as_trained(self) -> AsTrained:
        """This decoder for a search whose logits are formed as teacher forcing forms them."""
        return AsTrained(self)

    def attention_weights(self, features: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Where each step looked: features (B, F), tokens (B, T) -> the attention over the grid cells
        (B, T, L) with which step t chose word t + 1 (teacher forcing: the weights decoding used)."""
        if self.attention is None:
            raise CaptionerError("this model has no attention (model.decoder.attention_dim=0)")
        return self._run(tokens, self.initial_state(features))[2]

    def _teacher_forced(self, features: torch.Tensor, tokens: torch.Tensor, image_index: torch.Tensor | None,
                        teacher_forcing: bool) -> torch.Tensor:
        state = self.initial_state(features)
        if image_index is not None:
            state = state.reorder(image_index)
        outputs, _, _ = self._run(tokens, state)  # (N, T, H [+ C with attention])
        prior = state.prior.transpose(0, 1) if state.prior is not None else None  # (N, 1, V)
        return self._logits(self.dropout(outputs), prior, tokens, teacher_forcing)

    def _step(self, tokens: torch.Tensor, state: DecoderState,
              teacher_forcing: bool) -> tuple[torch.Tensor, DecoderState]:
        outputs, state, _ = self._run(tokens.unsqueeze(1), state)  # (B, 1, H [+ C with attention])
        prior = state.prior[0] if state.prior is not None else None  # (B, V)
        return self._logits(outputs.squeeze(1), prior, tokens, teacher_forcing), state

    def _logits(self, outputs: torch.Tensor, prior: torch.Tensor | None, previous: torch.Tensor,
                teacher_forcing: bool) -> torch.Tensor:
        """outputs (..., H [+ C]), the word prior (..., V) or None, the words before (...) -> logits (..., V)."""
        logits = self.out(outputs)
        if prior is not None:
            logits = logits + prior
        if self.head is not None:
            logits = self.head(logits, outputs, self.out, prior, previous, teacher_forcing)
        return logits

    def _run(self, tokens: torch.Tensor, state: DecoderState
             ) -> tuple[torch.Tensor, DecoderState, torch.Tensor | None]:
        """tokens (B, T) -> outputs (B, T, H [+ C with attention]), the state after the last step and
        the attention weights (B, T, L) (None without attention)."""
        inputs = self.embed(tokens)  # (B, T, E)
        if state.image is not None:
            image = state.image.transpose(0, 1).expand(-1, inputs.shape[1], -1)  # (B, T, P)
            inputs = torch.cat([inputs, image], dim=2)
        hidden = state.hidden[0] if self.num_states == 1 else state.hidden
        outputs, new_hidden = self.rnn(inputs, hidden)  # (B, T, H)
        weights = None
        if self.attention is not None:
            # each step's query is the top layer's hidden state before its word: the one that chose that word
            queries = torch.cat([state.hidden[0][-1].unsqueeze(1), outputs[:, :-1]], dim=1)  # (B, T, H)
            locations, keys = state.locations.transpose(0, 1), state.keys.transpose(0, 1)  # (B, L, C), (B, L, A)
            bias = self.head.attention_bias(tokens, locations, self.out) if self.head is not None else None
            contexts, weights = self.attention(locations, keys, queries, bias)  # (B, T, C), (B, T, L)
            outputs = torch.cat([outputs, contexts], dim=2)  # (B, T, H + C)
        new_hidden = tuple(new_hidden) if self.num_states == 2 else (new_hidden,)
        return outputs, replace(state, hidden=new_hidden), weights


class AsTrained:
    """A decoder as a search sees it (``initial_state``, ``step``), with its logits formed as teacher
    forcing forms them (a word-class head's training weight and logit adjustment): self-critical
    training samples the policy it trains."""

    def __init__(self, decoder: Decoder):
        self.decoder = decoder

    def initial_state(self, features: torch.Tensor) -> DecoderState:
        return self.decoder.initial_state(features)

    def step(self, tokens: torch.Tensor, state: DecoderState) -> tuple[torch.Tensor, DecoderState]:
        return self.decoder._step(tokens, state, teacher_forcing=True)

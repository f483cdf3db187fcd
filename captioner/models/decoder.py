"""Recurrent caption decoder: image features initialise the state of an LSTM/GRU/RNN.

As in Show and Tell (Vinyals et al., 2015) the image conditions the language model once, at
the start; here it sets the initial hidden state (and cell state for an LSTM) of every layer
through a linear layer and tanh, a common variant (e.g. Karpathy's NeuralTalk).

``image_input_dim > 0`` also feeds a projection of the image features with every word
("par-inject", Tanti et al., 2018, "Where to put the image in an image caption generator"):
the decoder can look at the image again when it names the second and third object.

The word head predicts from the image which words its captions use. It is trained by an
auxiliary loss (see ``CaptionModel``) and, with ``word_prior``, its log-probabilities are also
added to every step's word logits, a product of the language model and a word detector (the
fusion of Hendricks et al., 2016, "Deep Compositional Captioning"): a word the image does not
show is made unlikely however well it fits the sentence so far.
"""

from __future__ import annotations

import torch
from torch import nn

from captioner.errors import CaptionerError

CELLS: dict[str, type[nn.RNNBase]] = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}

# (h,) or (h, c), each (num_layers, B, hidden_dim), then what stays fixed for a caption and rides
# along so that searches reorder it with the beams: the projected image (1, B, image_input_dim)
# when image_input_dim > 0, the word prior (1, B, vocab_size) when word_prior
State = tuple[torch.Tensor, ...]


class Decoder(nn.Module):
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
    ):
        super().__init__()
        if cell not in CELLS:
            raise CaptionerError(f"unknown decoder cell {cell!r}; choose one of: {', '.join(CELLS)}")
        self.num_layers, self.hidden_dim = num_layers, hidden_dim
        self.num_states = 2 if cell == "lstm" else 1
        self.init_state = nn.Linear(feature_dim, self.num_states * num_layers * hidden_dim)
        self.image_input = nn.Linear(feature_dim, image_input_dim) if image_input_dim else None
        self.embed = nn.Embedding(vocab_size, embed_dim)
        self.rnn = CELLS[cell](embed_dim + image_input_dim, hidden_dim, num_layers, batch_first=True,
                               dropout=dropout if num_layers > 1 else 0.0)
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(hidden_dim, vocab_size)
        self.word_head = nn.Linear(feature_dim, vocab_size)
        self.word_prior = word_prior
        self._initialise()

    def _initialise(self) -> None:
        # The image starts as a small change to the state, so that learning the language
        # does not first teach the decoder to ignore a noisy state (measured: benchmarks/README.md).
        with torch.no_grad():
            self.init_state.weight.mul_(0.1)
            if isinstance(self.rnn, nn.LSTM):
                # Forget-gate bias 2 (Jozefowicz et al., 2015): the image in c0 lasts for
                # the many steps until the words that describe it.
                for name, bias in self.rnn.named_parameters():
                    if name.startswith("bias_"):
                        bias[self.hidden_dim : 2 * self.hidden_dim] = 1.0

    def initial_state(self, features: torch.Tensor) -> State:
        """features (B, F) -> state tensors (num_layers, B, hidden_dim)."""
        batch = features.shape[0]
        flat = torch.tanh(self.init_state(features))  # (B, S * L * H)
        states = flat.view(batch, self.num_states, self.num_layers, self.hidden_dim).permute(1, 2, 0, 3)
        states = tuple(s.contiguous() for s in states)  # each (L, B, H)
        if self.image_input is not None:
            states += (torch.tanh(self.image_input(features)).unsqueeze(0),)  # (1, B, P)
        if self.word_prior:
            states += (nn.functional.logsigmoid(self.word_logits(features).float()).unsqueeze(0),)  # (1, B, V)
        return states

    def word_logits(self, features: torch.Tensor) -> torch.Tensor:
        """features (B, F) -> logits (B, V) of each word appearing in the image's captions."""
        return self.word_head(features)

    def forward(self, features: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Teacher forcing: features (B, F), tokens (B, T) -> logits (B, T, V)."""
        state = self.initial_state(features)
        outputs, _ = self._run(self.embed(tokens), state)  # (B, T, H)
        logits = self.out(self.dropout(outputs))  # (B, T, V)
        return logits + state[-1].transpose(0, 1) if self.word_prior else logits

    def step(self, tokens: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """One step for decoding: tokens (B,) -> logits (B, V) and the next state."""
        outputs, state = self._run(self.embed(tokens).unsqueeze(1), state)  # (B, 1, H)
        logits = self.out(outputs.squeeze(1))  # (B, V)
        return (logits + state[-1][0] if self.word_prior else logits), state

    def _run(self, inputs: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """inputs (B, T, E) -> outputs (B, T, H) and the state after the last step."""
        recurrent, fixed = state[: self.num_states], state[self.num_states :]
        if self.image_input is not None:
            image = fixed[0].transpose(0, 1).expand(-1, inputs.shape[1], -1)  # (B, T, P)
            inputs = torch.cat([inputs, image], dim=2)
        outputs, new_state = self.rnn(inputs, recurrent[0] if self.num_states == 1 else recurrent)
        return outputs, (tuple(new_state) if self.num_states == 2 else (new_state,)) + fixed

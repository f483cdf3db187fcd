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

``attention_dim > 0`` lets every step look at one place of the image (as in Show, Attend and
Tell, Xu et al., 2015): the feature vector is read as the encoder's ``locations`` grid cells, and
scaled dot-product attention over them gives each step a context vector that goes with the hidden
state to the word logits, so the object being named is read from where it is, not from a summary
of the whole scene. A step's query is the hidden state before its word (the one that chose the
word before), so in training the recurrent cell still runs over a whole caption at once; feeding
the context back into the cell step by step (Xu et al.) was 1.5x slower per training step here.
Additive attention (Bahdanau et al., 2015) took 6-18% more time per training step than
dot-product for about the same test accuracy (benchmarks/README.md, session 7).

``word_classes`` (groups of vocabulary ids, e.g. the colour words and the shape words) splits
each choice of such a word in two: the language model says how likely a word of the group comes
next (the group's share of its distribution), the image alone says which word of the group it is
(a softmax over the group of the word logits without the hidden state's term: the attended
context, the bias and the word prior). A language model trained on captions that never say
"yellow cross" cannot then veto "cross" after "yellow" when the image shows one; this is the
split between when and what of Neural Baby Talk (Lu et al., 2018) and the lexical classes of
Hendricks et al. (2016), here over plain word groups. ``class_lm_weight`` lets the language
model's own preference within a group back in, scaled: 0 leaves the choice to the image alone, 1
is the plain decoder; ``decoding_class_lm_weight`` is the one decoding uses (None: the same).
Trained at 0.3 and decoded at 0.05, the demo's test attribute accuracy is
0.850 / 0.818 on two seeds, against 0.774 / 0.749 without word classes (at 0 in training the
image's side learns the training pairs' colour-shape shortcuts itself; benchmarks/README.md,
session 9).

Two more things bind a class word to the object named by the class word before it ("a red
circle": the shape of the red thing). ``class_pointer``: after a word of a class, the next step's
attention scores also get, for every grid cell, how strongly that cell alone would be read as
the word just said (its features times that word's output weights, not trained through this
path), scaled by a learned weight per class; so the shape is read where the colour was seen.
``set_class_prior``: in training only, each class word's logit within its class also gets the
training captions' log-probability of that word after the previous word (logit adjustment for
a label prior, Menon et al., 2021, "Long-tail learning via logit adjustment"); the image's side
then learns what the image shows beyond "after yellow comes a circle or a star", so it does not
learn that yellow things are never crosses, and decoding (without the prior) can name one.
The pointer alone binds and loses the held-out pairs; with both the demo's test attribute
accuracy is 0.911 / 0.908 on two seeds (seen 0.953 / 0.946, held-out pairs 0.673 / 0.693),
against 0.850 / 0.818 (benchmarks/README.md, session 12).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn

from captioner.errors import CaptionerError

CELLS: dict[str, type[nn.RNNBase]] = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}

# (h,) or (h, c), each (num_layers, B, hidden_dim), then what stays fixed for a caption and rides
# along so that searches reorder it with the beams (batch on dim 1): the projected image
# (1, B, image_input_dim) when image_input_dim > 0; the grid cells' features (L, B, C) and their
# attention keys (L, B, attention_dim) when attention_dim > 0; the word prior (1, B, vocab_size)
# when word_prior
State = tuple[torch.Tensor, ...]


class Attention(nn.Module):
    """Scaled dot-product attention: queries (B, T, H) weigh the locations (B, L, C) into contexts (B, T, C)."""

    def __init__(self, location_dim: int, query_dim: int, attention_dim: int):
        super().__init__()
        self.keys = nn.Linear(location_dim, attention_dim)
        self.query = nn.Linear(query_dim, attention_dim, bias=False)

    def forward(self, locations: torch.Tensor, keys: torch.Tensor, queries: torch.Tensor,
                bias: torch.Tensor | None = None) -> torch.Tensor:
        """locations (B, L, C), keys (B, L, A) = ``self.keys(locations)``, queries (B, T, H), and a
        bias (B, T, L) added to the scores or None -> (B, T, C)."""
        scores = self.query(queries) @ keys.transpose(1, 2) / keys.shape[2] ** 0.5  # (B, T, L)
        if bias is not None:
            scores = scores + bias
        return scores.softmax(2) @ locations


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
        attention_dim: int = 0,
        locations: int = 1,
        word_classes: list[list[int]] | None = None,
        class_lm_weight: float = 0.3,
        decoding_class_lm_weight: float | None = None,
        class_pointer: bool = False,
    ):
        super().__init__()
        if cell not in CELLS:
            raise CaptionerError(f"unknown decoder cell {cell!r}; choose one of: {', '.join(CELLS)}")
        if attention_dim and feature_dim % locations:
            raise CaptionerError(f"feature size {feature_dim} does not split into {locations} locations")
        self.word_classes = [list(group) for group in word_classes or ()]
        if decoding_class_lm_weight is None:
            decoding_class_lm_weight = class_lm_weight
        # training (teacher forcing) uses the first, decoding (step) the second
        self.class_lm_weight, self.decoding_class_lm_weight = class_lm_weight, decoding_class_lm_weight
        _check_word_classes(self.word_classes, vocab_size, sees_image=bool(word_prior or attention_dim),
                            weights=(class_lm_weight, decoding_class_lm_weight))
        if class_pointer and not (self.word_classes and attention_dim):
            raise CaptionerError("class_pointer needs word classes and attention_dim > 0: it steers the attention")
        self.num_layers, self.hidden_dim, self.locations = num_layers, hidden_dim, locations
        self.num_states = 2 if cell == "lstm" else 1
        self.init_state = nn.Linear(feature_dim, self.num_states * num_layers * hidden_dim)
        self.image_input = nn.Linear(feature_dim, image_input_dim) if image_input_dim else None
        location_dim = feature_dim // locations if attention_dim else 0
        self.attention = Attention(location_dim, hidden_dim, attention_dim) if attention_dim else None
        self.embed = nn.Embedding(vocab_size, embed_dim)
        self.rnn = CELLS[cell](embed_dim + image_input_dim, hidden_dim, num_layers, batch_first=True,
                               dropout=dropout if num_layers > 1 else 0.0)
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(hidden_dim + location_dim, vocab_size)
        self.word_head = nn.Linear(feature_dim, vocab_size)
        self.word_prior = word_prior
        # each vocabulary id's word class (-1: none), as a plain list for the same reason as the classes' ids
        self.class_of = [-1] * vocab_size
        for k, group in enumerate(self.word_classes):
            for word in group:
                self.class_of[word] = k
        self.pointer_scale = nn.Parameter(torch.ones(len(self.word_classes))) if class_pointer else None
        # (V, V) or None: teacher forcing's log-prior of each class word after each word (set_class_prior)
        self.register_buffer("class_prior", None, persistent=False)
        # the names of the fixed parts of a State, in order
        self.fixed_parts = ((("image",) if image_input_dim else ()) + (("locations", "keys") if attention_dim else ())
                            + (("prior",) if word_prior else ()))
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
        if self.attention is not None:
            locations = features.view(batch, -1, self.locations).transpose(1, 2)  # (B, L, C): the grid cells
            keys = self.attention.keys(locations)  # (B, L, A)
            states += (locations.transpose(0, 1), keys.transpose(0, 1))  # (L, B, C), (L, B, A)
        if self.word_prior:
            states += (nn.functional.logsigmoid(self.word_logits(features).float()).unsqueeze(0),)  # (1, B, V)
        return states

    def set_class_prior(self, log_prior: torch.Tensor | None) -> None:
        """In teacher forcing, add ``log_prior[previous word, word]`` (V, V) to the logits of the class
        words within their class (logit adjustment; see the module's text); decoding never uses it."""
        if log_prior is not None and log_prior.shape != (len(self.class_of),) * 2:
            raise CaptionerError(f"a class prior has shape (vocabulary, vocabulary), got {tuple(log_prior.shape)}")
        self.class_prior = None if log_prior is None else log_prior.to(self.out.weight.device)

    def word_logits(self, features: torch.Tensor) -> torch.Tensor:
        """features (B, F) -> logits (B, V) of each word appearing in the image's captions."""
        return self.word_head(features)

    def forward(self, features: torch.Tensor, tokens: torch.Tensor, image_index: torch.Tensor | None = None
                ) -> torch.Tensor:
        """Teacher forcing: features (B, F), tokens (N, T) -> logits (N, T, V).

        ``image_index`` (N,) says which image each caption describes (by default caption i
        describes image i): the image's part of the state is computed once per image.
        """
        state = self.initial_state(features)
        if image_index is not None:
            state = tuple(s[:, image_index] for s in state)
        outputs, _ = self._run(tokens, state)  # (N, T, H [+ C with attention])
        prior = state[-1].transpose(0, 1) if self.word_prior else None
        adjustment = self.class_prior[tokens] if self.class_prior is not None else None  # (N, T, V)
        return self._logits(self.dropout(outputs), prior, self.class_lm_weight, adjustment)

    def step(self, tokens: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """One step for decoding: tokens (B,) -> logits (B, V) and the next state."""
        outputs, state = self._run(tokens.unsqueeze(1), state)  # (B, 1, H [+ C with attention])
        prior = state[-1][0] if self.word_prior else None
        return self._logits(outputs.squeeze(1), prior, self.decoding_class_lm_weight), state

    @contextmanager
    def decoding_with_class_lm_weight(self, weight: float | None) -> Iterator[None]:
        """Within the block, ``step`` weighs the language model within word classes by ``weight`` (None: unchanged)."""
        saved = self.decoding_class_lm_weight
        self.decoding_class_lm_weight = saved if weight is None else weight
        try:
            yield
        finally:
            self.decoding_class_lm_weight = saved

    def _logits(self, outputs: torch.Tensor, prior: torch.Tensor | None, class_lm_weight: float,
                adjustment: torch.Tensor | None = None) -> torch.Tensor:
        """outputs (..., H [+ C]), the word prior (..., V) or None and the class prior's rows for the
        previous words (..., V) or None -> word logits (..., V)."""
        logits = self.out(outputs)
        if prior is not None:
            logits = logits + prior
        image = outputs[..., self.hidden_dim :]  # the attended context (empty without attention)
        for group in self.word_classes:
            # ids as a plain list, not an integer buffer: the weight average (trainer.ema_decay) would average a buffer
            index = torch.as_tensor(group, device=logits.device)
            weight = self.out.weight[index]  # (K, H [+ C])
            within = nn.functional.linear(image, weight[:, self.hidden_dim :], self.out.bias[index])
            if class_lm_weight:  # the language model's own preference, damped
                within = within + class_lm_weight * (outputs[..., : self.hidden_dim] @ weight[:, : self.hidden_dim].T)
            if prior is not None:
                within = within + prior[..., index]
            if adjustment is not None:
                within = within + adjustment[..., index]
            share = logits[..., index].logsumexp(-1, keepdim=True)  # the language model's: when
            logits = logits.index_copy(-1, index, (share + within.log_softmax(-1)).to(logits.dtype))  # the image: which
        return logits

    def _run(self, tokens: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """tokens (B, T) -> outputs (B, T, H [+ C with attention]) and the state after the last step."""
        inputs = self.embed(tokens)  # (B, T, E)
        recurrent, fixed = state[: self.num_states], state[self.num_states :]
        parts = dict(zip(self.fixed_parts, fixed))
        if self.image_input is not None:
            image = parts["image"].transpose(0, 1).expand(-1, inputs.shape[1], -1)  # (B, T, P)
            inputs = torch.cat([inputs, image], dim=2)
        outputs, new_state = self.rnn(inputs, recurrent[0] if self.num_states == 1 else recurrent)  # (B, T, H)
        if self.attention is not None:
            # each step's query is the top layer's hidden state before its word: the one that chose that word
            queries = torch.cat([recurrent[0][-1].unsqueeze(1), outputs[:, :-1]], dim=1)  # (B, T, H)
            locations, keys = parts["locations"].transpose(0, 1), parts["keys"].transpose(0, 1)  # (B, L, C), (B, L, A)
            bias = self._pointer_scores(tokens, locations) if self.pointer_scale is not None else None
            outputs = torch.cat([outputs, self.attention(locations, keys, queries, bias)], dim=2)  # (B, T, H + C)
        return outputs, (tuple(new_state) if self.num_states == 2 else (new_state,)) + fixed

    def _pointer_scores(self, tokens: torch.Tensor, locations: torch.Tensor) -> torch.Tensor:
        """tokens (B, T), locations (B, L, C) -> (B, T, L): how strongly each cell alone reads as the
        class word just said, times its class's learned weight (0 after other words)."""
        classes = torch.as_tensor(self.class_of, device=tokens.device)[tokens]  # (B, T)
        readout = self.out.weight[tokens, self.hidden_dim :].detach()  # (B, T, C): naming is trained elsewhere
        scores = readout @ locations.transpose(1, 2).to(readout.dtype)  # (B, T, L)
        scale = torch.where(classes >= 0, self.pointer_scale[classes.clamp(min=0)], 0.0)  # (B, T)
        return scale.unsqueeze(2) * scores


def class_bigram_log_prior(captions: Iterable[Sequence[int]], vocab_size: int, groups: list[list[int]],
                           smoothing: float = 1.0) -> torch.Tensor:
    """(V, V): entry [p, w] is the log-probability that word w follows word p among the words of
    w's class, counted over ``captions`` (token ids) with ``smoothing`` added to every count (a pair
    never seen gets a finite prior); 0 outside the classes. For ``Decoder.set_class_prior``."""
    pairs = torch.tensor([(previous, word) for ids in captions for previous, word in zip(ids, ids[1:])],
                         dtype=torch.long).view(-1, 2)
    counts = torch.bincount(pairs[:, 0] * vocab_size + pairs[:, 1], minlength=vocab_size * vocab_size)
    counts = counts.float().view(vocab_size, vocab_size)
    log_prior = torch.zeros(vocab_size, vocab_size)
    for group in groups:
        block = counts[:, group] + smoothing
        log_prior[:, group] = (block / block.sum(1, keepdim=True)).log()
    return log_prior


def _check_word_classes(groups: list[list[int]], vocab_size: int, sees_image: bool,
                        weights: tuple[float, float]) -> None:
    words = [word for group in groups for word in group]
    if min(weights) < 0:
        raise CaptionerError(f"class_lm_weight and decoding_class_lm_weight must be >= 0, got {weights}")
    if groups and not sees_image:
        raise CaptionerError("word classes need word_prior or attention_dim > 0: the choice within a class reads "
                             "only the image")
    if any(len(group) < 2 for group in groups):
        raise CaptionerError("a word class needs at least two words")
    if len(set(words)) != len(words):
        raise CaptionerError("a word is in more than one word class")
    if any(not 0 <= word < vocab_size for word in words):
        raise CaptionerError(f"word class ids must lie in 0..{vocab_size - 1}")

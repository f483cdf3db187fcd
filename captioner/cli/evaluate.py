"""captioner-evaluate: caption a split with a model and score it, or score any system's COCO results file."""

from __future__ import annotations

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from captioner import distributed
from captioner.api import Captioner
from captioner.cli.common import data_scorers, instantiate_records, limit_threads_in_parallel_sweeps
from captioner.cli.config import model_settings, typed, user_errors
from captioner.cli.overrides import command
from captioner.decode_options import DecodeOptions
from captioner.devices import resolve_device
from captioner.errors import CaptionerError
from captioner.evaluation import evaluate_files, evaluate_model


@command("evaluate")
def main(cfg: DictConfig) -> None:
    with user_errors(sweeps=True):
        limit_threads_in_parallel_sweeps()
        out_dir = HydraConfig.get().runtime.output_dir
        text_metrics = OmegaConf.to_container(cfg.metrics)
        if cfg.checkpoint and (cfg.predictions or cfg.references):
            raise CaptionerError("give either checkpoint=PATH or predictions=FILE references=FILE, not both")
        if cfg.checkpoint:
            decode = typed(DecodeOptions, cfg.decode, "decode")
            _, _, device = distributed.init_if_launched(resolve_device(cfg.device))  # under torchrun: split the images
            try:
                captioner = Captioner.load(cfg.checkpoint, device, **model_settings(cfg))  # before any data work
                evaluate_model(captioner, instantiate_records(cfg.data, once=True), out_dir, cfg.split, decode,
                               cfg.batch_size, text_metrics, data_scorers(cfg.data), cfg.num_workers, cfg.report)
            finally:
                distributed.shutdown()
        elif cfg.predictions and cfg.references:
            if cfg.report:
                raise CaptionerError("report=true shows each image beside its caption: it needs checkpoint=PATH "
                                     "(a results file has no images)")
            evaluate_files(cfg.predictions, cfg.references, out_dir, text_metrics)
        else:
            raise CaptionerError("nothing to evaluate: give checkpoint=PATH, or predictions=FILE references=FILE")


if __name__ == "__main__":
    main()

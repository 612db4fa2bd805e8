"""The families' optimisation steps, each as its paper's framework does it: initialisation,
networks and optimisers, and ``step(batch) -> losses``."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import ClassifierGanLoss
from .losses import (
    gan_loss,
    ms_ssim,
    relativistic_discriminator_loss,
    relativistic_generator_loss,
    ssim,
    wang_ssim_loss,
    weighted_mse,
)
from .tasks import TaskSetup


# --- initialisation, as each paper's framework does it -------------------------------------


def init_pix2pix(module: nn.Module) -> None:
    """pix2pix 'normal' init (gain 0.02), used by the public TA-GAN code."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


def init_glorot(module: nn.Module) -> None:
    """Keras/TensorFlow defaults (CARE, Wang et al.): Glorot-uniform kernels, zero biases."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def _set_requires_grad(module: nn.Module, flag: bool) -> None:
    for parameter in module.parameters():
        parameter.requires_grad_(flag)


# --- the families' optimisation steps ------------------------------------------------------


class FamilyTrainer:
    """Networks and optimisers of a family; subclasses add ``step(batch) -> losses``.

    ``networks`` and ``optimizers`` hold everything a checkpoint must save; ``base_lr`` the
    learning rate of each optimiser before any decay.
    """

    def __init__(self) -> None:
        self.networks: dict[str, nn.Module] = {}
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.base_lr: dict[str, float] = {}

    def add_optimizer(self, name: str, module: nn.Module, lr: float, betas: tuple[float, float]) -> None:
        self.optimizers[name] = torch.optim.Adam(module.parameters(), lr=lr, betas=betas)
        self.base_lr[name] = lr

    def scale_learning_rates(self, factor: float) -> None:
        for name, optimizer in self.optimizers.items():
            for group in optimizer.param_groups:
                group["lr"] = self.base_lr[name] * factor


class TaganTrainer(FamilyTrainer):
    """TA-GAN, TA-GAN-Live and the pix2pix baseline, in the public code's order per step:
    discriminator, generator, then (when it learns) the task network.

    D: vanilla GAN loss on (input, real) vs (input, generated), halved as in pix2pix.
    G: GAN loss + weight x generation loss, where the generation loss is the MSE between the
    task network's output on the generated image and the reference: the task ground truth
    when the data has it, else the frozen task network's output on the real image
    (TA-GAN-Live). Without a task network (pix2pix) it is the pixel MSE to the real image.
    Task network: MSE between its output on the real image and the ground truth.
    """

    def __init__(self, generator, discriminator, task: TaskSetup | None, weight: float, lrs: dict[str, float], betas):
        super().__init__()
        self.generator, self.discriminator, self.task, self.weight = generator, discriminator, task, weight
        self.networks.update(generator=generator, discriminator=discriminator)
        self.add_optimizer("generator", generator, lrs["generator"], betas)
        self.add_optimizer("discriminator", discriminator, lrs["discriminator"], betas)
        if task is not None:
            self.networks["task"] = task.network
            if task.trained:
                self.add_optimizer("task", task.network, lrs["task"], betas)
            else:
                task.network.eval()
                _set_requires_grad(task.network, False)

    def step(self, batch):
        x, y = batch["input"], batch["target"]
        fake = self.generator(x)

        _set_requires_grad(self.discriminator, True)
        self.optimizers["discriminator"].zero_grad(set_to_none=True)
        d_fake = gan_loss(self.discriminator(torch.cat([x, fake.detach()], 1)), real=False)
        d_real = gan_loss(self.discriminator(torch.cat([x, y], 1)), real=True)
        (0.5 * (d_fake + d_real)).backward()
        self.optimizers["discriminator"].step()

        _set_requires_grad(self.discriminator, False)
        if self.task is not None and self.task.trained:
            _set_requires_grad(self.task.network, False)
        self.optimizers["generator"].zero_grad(set_to_none=True)
        adversarial = gan_loss(self.discriminator(torch.cat([x, fake], 1)), real=True)
        generation = self._generation_loss(fake, batch)
        (adversarial + self.weight * generation).backward()
        self.optimizers["generator"].step()
        losses = {"d_real": d_real.item(), "d_fake": d_fake.item(), "g_adversarial": adversarial.item()}
        losses["g_task" if self.task is not None else "g_pixel"] = generation.item()

        if self.task is not None and self.task.trained:
            _set_requires_grad(self.task.network, True)
            self.optimizers["task"].zero_grad(set_to_none=True)
            task_loss = F.mse_loss(self.task.network(y), batch["task"])
            task_loss.backward()
            self.optimizers["task"].step()
            losses["task"] = task_loss.item()
        return losses

    def _generation_loss(self, fake: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        if self.task is None:
            return F.mse_loss(fake, batch["target"])
        if "task" in batch:
            reference = batch["task"]
        else:
            with torch.no_grad():
                reference = self.task.network(batch["target"])
        return F.mse_loss(self.task.network(fake), reference)


class SegmentationTrainer(FamilyTrainer):
    """U-Net-Live: the task network alone, on real STED images and their masks, with a
    class-weighted MSE (the paper weights fibres 2.5x)."""

    def __init__(self, network: nn.Module, class_weights: list[float], lr: float, betas):
        super().__init__()
        self.network, self.class_weights = network, class_weights
        self.networks["task"] = network
        self.add_optimizer("task", network, lr, betas)

    def step(self, batch):
        self.optimizers["task"].zero_grad(set_to_none=True)
        loss = weighted_mse(self.network(batch["target"]), batch["task"], self.class_weights)
        loss.backward()
        self.optimizers["task"].step()
        return {"segmentation": loss.item()}


class ClassifierGanTrainer(FamilyTrainer):
    """Wang et al. 2019 and TCAN: an image-level discriminator; per step the generator is
    updated with the discriminator fixed, then the discriminator with the generator fixed.

    Wang: G = adversarial (-log D(G(x))) + mse x MSE + ssim x -log((1 + SSIM) / 2);
    D = -log D(y) - log(1 - D(G(x))).
    TCAN (relativistic): G = adversarial x BCE(D(G(x)) - D(y), 1) + mse x MSE + ssim x (1 - SSIM);
    D = (BCE(D(G(x)) - D(y), 0) + BCE(D(y) - D(G(x)), 1)) / 2.
    """

    def __init__(self, generator, discriminator, relativistic: bool, weights: ClassifierGanLoss, lrs, betas):
        super().__init__()
        self.generator, self.discriminator = generator, discriminator
        self.relativistic, self.weights = relativistic, weights
        self.networks.update(generator=generator, discriminator=discriminator)
        self.add_optimizer("generator", generator, lrs["generator"], betas)
        self.add_optimizer("discriminator", discriminator, lrs["discriminator"], betas)

    def step(self, batch):
        x, y = batch["input"], batch["target"]
        fake = self.generator(x)

        _set_requires_grad(self.discriminator, False)
        self.optimizers["generator"].zero_grad(set_to_none=True)
        fake_logits = self.discriminator(fake)
        if self.relativistic:
            adversarial = relativistic_generator_loss(fake_logits, self.discriminator(y).detach())
        else:
            adversarial = gan_loss(fake_logits, real=True)
        mse = F.mse_loss(fake, y)
        total = self.weights.adversarial * adversarial + self.weights.mse * mse
        losses = {"g_adversarial": adversarial.item(), "mse": mse.item()}
        if self.weights.ssim > 0:
            ssim_term = 1 - ssim(fake, y, data_range=1.0) if self.relativistic else wang_ssim_loss(fake, y, data_range=1.0)
            total = total + self.weights.ssim * ssim_term
            losses["ssim_term"] = ssim_term.item()
        total.backward()
        self.optimizers["generator"].step()

        _set_requires_grad(self.discriminator, True)
        self.optimizers["discriminator"].zero_grad(set_to_none=True)
        fake_logits, real_logits = self.discriminator(fake.detach()), self.discriminator(y)
        if self.relativistic:
            d_loss = relativistic_discriminator_loss(fake_logits, real_logits)
        else:
            d_loss = gan_loss(real_logits, real=True) + gan_loss(fake_logits, real=False)
        d_loss.backward()
        self.optimizers["discriminator"].step()
        losses["discriminator"] = d_loss.item()
        return losses


class RestorationTrainer(FamilyTrainer):
    """label2label / CARE: the generator alone with L1 or an M-scale MS-SSIM loss, 1 - MS-SSIM
    with shifted per-scale terms (see ``ms_ssim``: plain terms can turn negative and stall it)."""

    def __init__(self, generator: nn.Module, kind: str, scales: int, lr: float, betas):
        super().__init__()
        self.generator, self.kind, self.scales = generator, kind, scales
        self.networks["generator"] = generator
        self.add_optimizer("generator", generator, lr, betas)

    def step(self, batch):
        self.optimizers["generator"].zero_grad(set_to_none=True)
        restored = self.generator(batch["input"])
        if self.kind == "l1":
            loss = F.l1_loss(restored, batch["target"])
        else:
            loss = 1 - ms_ssim(restored, batch["target"], data_range=1.0, scales=self.scales, shifted=True)
        loss.backward()
        self.optimizers["generator"].step()
        return {"l1" if self.kind == "l1" else "ms_ssim_loss": loss.item()}

#!/usr/bin/env Rscript
# glmmTMB fits of the model-language terms (bench/peers/terms.py writes the data):
#
#   Rscript bench/peers/terms.R DATA.csv KIND OUT.json
#
# KIND "moderators": nbinom2, y ~ w * m_c + z + z:w + v + v:w + offset(log(children))
#                    + (1 + w | la), z a neighbourhood and v an LA moderator, both centred
#                    exactly as socialgradient centres them (child-weighted means);
# KIND "binomial":   binomial (logit), cbind(y, trials - y) ~ w * m_c + (1 + w | la).
# Writes the fixed effects (estimate, std. error) and the wall time as JSON.
suppressMessages({library(glmmTMB); library(jsonlite)})
args <- commandArgs(trailingOnly = TRUE)
d <- read.csv(args[1], stringsAsFactors = FALSE)
kind <- args[2]
start <- Sys.time()
if (kind == "moderators") {
  fit <- glmmTMB(y ~ w * m_c + z + z:w + v + v:w + offset(log(children)) + (1 + w | la),
                 data = d, family = nbinom2)
} else if (kind == "binomial") {
  fit <- glmmTMB(cbind(y, trials - y) ~ w * m_c + (1 + w | la), data = d, family = binomial)
} else stop("unknown KIND ", kind)
wall <- as.numeric(difftime(Sys.time(), start, units = "secs"))
co <- summary(fit)$coefficients$cond
out <- list(kind = kind, wall_seconds = wall, converged = fit$fit$convergence == 0,
            glmmTMB = as.character(packageVersion("glmmTMB")),
            estimate = as.list(co[, "Estimate"]), se = as.list(co[, "Std. Error"]))
writeLines(toJSON(out, auto_unbox = TRUE, digits = 10), args[3])

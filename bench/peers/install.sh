#!/usr/bin/env bash
# Install R and the peer-benchmark packages (lme4, glmmTMB, brms/rstan) from Debian.
# Idempotent: does nothing if glmmTMB and brms already load.
set -euo pipefail

if command -v Rscript >/dev/null 2>&1 &&
   Rscript -e 'suppressMessages({library(lme4); library(glmmTMB); library(brms); library(jsonlite)})' >/dev/null 2>&1; then
  echo "peers/install.sh: R peer packages already installed"
  exit 0
fi

SUDO=""
if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive

$SUDO apt-get update
$SUDO apt-get install -y --no-install-recommends \
  r-base-core r-cran-lme4 r-cran-glmmtmb r-cran-brms r-cran-rstan r-cran-jsonlite \
  r-cran-posterior build-essential
# arrow is optional (peers.R falls back to CSV / never needs parquet)
if apt-cache show r-cran-arrow >/dev/null 2>&1; then
  $SUDO apt-get install -y --no-install-recommends r-cran-arrow || true
fi

Rscript -e 'suppressMessages({library(lme4); library(glmmTMB); library(brms); library(jsonlite)}); cat("peers/install.sh: OK\n")'

#!/usr/bin/env Rscript
# Peer benchmarks for the socialgradient national model: lme4, glmmTMB and brms fits of
#
#   y ~ w * m_c + offset(log(children)) + (1 + w | la)
#
# Usage:
#   Rscript bench/peers/peers.R DATA.csv OUTCOME OUT.json
#       [--which lme4,glmmtmb_pois,glmmtmb_nb,brms_pois,brms_nb]
#       [--chains 4] [--iter 2000] [--warmup 1000] [--seed 1] [--cores 2] [--adapt_delta 0.8]
#       [--timeout SECONDS]        (per peer; default 3600)
#
# Each peer runs in its own Rscript subprocess (this file with --worker), under GNU
# `timeout` when available (kills the whole process group, i.e. rstan's chains too), so a
# slow peer is recorded as status "timeout" instead of hanging the driver. See README.md.

PEERS <- c("lme4", "glmmtmb_pois", "glmmtmb_nb", "brms_pois", "brms_nb")
PARAM_NAMES <- c("(Intercept)" = "a", "w" = "b_w", "m_c" = "b_b", "w:m_c" = "b_x")

# ----------------------------------------------------------------------------- arguments
parse_args <- function(args) {
  pos <- character(0)
  opt <- list(which = paste(PEERS, collapse = ","), chains = 4, iter = 2000,
              warmup = 1000, seed = 1, timeout = 3600, worker = NA_character_,
              cores = 2, adapt_delta = 0.8)
  i <- 1
  while (i <= length(args)) {
    a <- args[i]
    if (startsWith(a, "--")) {
      key <- sub("^--", "", a)
      if (grepl("=", key)) {
        val <- sub("^[^=]*=", "", key); key <- sub("=.*$", "", key); i <- i + 1
      } else {
        val <- args[i + 1]; i <- i + 2
      }
      if (!key %in% names(opt)) stop("unknown option --", key)
      opt[[key]] <- if (is.numeric(opt[[key]])) as.numeric(val) else val
    } else {
      pos <- c(pos, a); i <- i + 1
    }
  }
  if (length(pos) != 3) {
    stop("usage: peers.R DATA.csv OUTCOME OUT.json [--which ...] [--chains 4 --iter 2000 ",
         "--warmup 1000] [--timeout SECONDS]")
  }
  opt$data <- pos[1]; opt$outcome <- pos[2]; opt$out <- pos[3]
  opt$which <- trimws(strsplit(opt$which, ",")[[1]])
  bad <- setdiff(opt$which, PEERS)
  if (length(bad)) stop("unknown peer(s): ", paste(bad, collapse = ", "))
  opt
}

# ----------------------------------------------------------------------------- data
# Same arithmetic as socialgradient.deprivation.decompose (children-weighted means).
load_data <- function(path, outcome) {
  d <- utils::read.csv(path, colClasses = c(lsoa = "character", la = "character"),
                       stringsAsFactors = FALSE)
  need <- c("lsoa", "la", "children", "income", outcome)
  miss <- setdiff(need, names(d))
  if (length(miss)) stop("missing column(s) in ", path, ": ", paste(miss, collapse = ", "))
  d <- d[, need]
  names(d)[names(d) == outcome] <- "y"
  x <- 10 * d$income
  n <- d$children
  m_la <- tapply(n * x, d$la, sum) / tapply(n, d$la, sum)
  x_bar <- sum(n * x) / sum(n)
  d$w <- x - as.numeric(m_la[d$la])
  d$m_c <- as.numeric(m_la[d$la]) - x_bar
  d$log_children <- log(d$children)
  d$la <- factor(d$la, levels = unique(d$la))
  attr(d, "x_bar") <- x_bar
  d
}

FORMULA <- y ~ w * m_c + offset(log_children) + (1 + w | la)

fixed_table <- function(est, se) {
  out <- list()
  for (term in names(PARAM_NAMES)) {
    out[[PARAM_NAMES[[term]]]] <- list(term = term, estimate = unname(est[term]),
                                       se = unname(se[term]))
  }
  out
}

re_from_varcorr <- function(vc) {
  sds <- attr(vc, "stddev")
  cor <- attr(vc, "correlation")
  list(sd_a = unname(sds[1]), sd_b = unname(sds[2]), cor_ab = unname(cor[1, 2]))
}

# ----------------------------------------------------------------------------- peers
fit_lme4 <- function(d, opt) {
  suppressPackageStartupMessages(library(lme4))
  warns <- character(0)
  tm <- system.time(fit <- withCallingHandlers(
    glmer(FORMULA, data = d, family = poisson(),
          control = glmerControl(optimizer = "bobyqa", optCtrl = list(maxfun = 1e5))),
    warning = function(w) { warns <<- c(warns, conditionMessage(w)); invokeRestart("muffleWarning") }))
  cf <- summary(fit)$coefficients
  msgs <- c(fit@optinfo$conv$lme4$messages, fit@optinfo$warnings)
  list(
    family = "poisson", method = "Laplace ML (glmer, bobyqa)",
    wall_s = unname(tm["elapsed"]),
    converged = length(msgs) == 0 && fit@optinfo$conv$opt == 0 && length(warns) == 0,
    convergence = list(optimizer_code = fit@optinfo$conv$opt,
                       messages = as.list(unlist(msgs)), warnings = as.list(warns),
                       singular = isSingular(fit)),
    fixed = fixed_table(cf[, "Estimate"], cf[, "Std. Error"]),
    re = re_from_varcorr(VarCorr(fit)$la),
    phi = NULL,
    logLik = as.numeric(logLik(fit))
  )
}

fit_glmmtmb <- function(d, opt, family) {
  suppressPackageStartupMessages(library(glmmTMB))
  fam <- if (family == "poisson") poisson() else nbinom2()
  warns <- character(0)
  tm <- system.time(fit <- withCallingHandlers(
    glmmTMB(FORMULA, data = d, family = fam),
    warning = function(w) { warns <<- c(warns, conditionMessage(w)); invokeRestart("muffleWarning") }))
  cf <- summary(fit)$coefficients$cond
  conv <- fit$fit$convergence
  pd <- isTRUE(fit$sdr$pdHess)
  phi <- if (family == "nbinom2") sigma(fit) else NULL
  phi_se <- NULL
  if (!is.null(phi)) {
    # se of phi by the delta method from the se of log(phi) (betadisp / betad)
    sdr <- summary(fit$sdr, "fixed")
    rn <- rownames(sdr)
    j <- which(rn %in% c("betad", "betadisp"))
    if (length(j) == 1) phi_se <- unname(phi * sdr[j, "Std. Error"])
  }
  list(
    family = family, method = "Laplace ML (glmmTMB/TMB, nlminb)",
    wall_s = unname(tm["elapsed"]),
    converged = conv == 0 && pd && length(warns) == 0,
    convergence = list(optimizer_code = conv, optimizer_message = fit$fit$message,
                       pdHess = pd, warnings = as.list(warns)),
    fixed = fixed_table(cf[, "Estimate"], cf[, "Std. Error"]),
    re = re_from_varcorr(VarCorr(fit)$cond$la),
    phi = phi, phi_se = phi_se,
    logLik = as.numeric(logLik(fit))
  )
}

fit_brms <- function(d, opt, family) {
  suppressPackageStartupMessages({library(brms); library(rstan)})
  # Debian's r-cran-bh is a stub (the headers are in libboost-dev, /usr/include/boost):
  # rstan must be told where Boost is before it compiles anything.
  rstan_options(boost_lib = "/usr/include")
  rstan_options(auto_write = FALSE)
  fam <- if (family == "poisson") poisson() else negbinomial()
  # `0 + Intercept` puts the normal(-4, 2.5) prior on a itself (not on brms's
  # centred-design intercept), as in socialgradient.
  form <- bf(y ~ 0 + Intercept + w * m_c + offset(log_children) + (1 + w | la))
  pri <- c(prior(normal(-4, 2.5), class = b, coef = Intercept),
           prior(normal(0, 1), class = b),
           prior(normal(0, 1), class = sd, group = la, coef = Intercept),
           prior(normal(0, 0.5), class = sd, group = la, coef = w),
           prior(lkj(2), class = cor))
  if (family == "negbinomial") pri <- c(pri, prior(gamma(2, 0.1), class = shape))

  # Compile and sample separately so the two times can be reported; the result is fed back
  # into an empty brmsfit (brms's documented route for models fitted outside brm()).
  t_total <- system.time({
    code <- make_stancode(form, data = d, family = fam, prior = pri)
    sdata <- make_standata(form, data = d, family = fam, prior = pri)
    t_compile <- system.time(sm <- stan_model(model_code = code, model_name = "peer"))
    sampling_warns <- character(0)
    t_sample <- system.time(sf <- withCallingHandlers(
      sampling(sm, data = sdata, chains = opt$chains, iter = opt$iter, warmup = opt$warmup,
               cores = min(opt$cores, opt$chains), seed = opt$seed, refresh = 0,
               control = list(adapt_delta = opt$adapt_delta)),
      warning = function(w) {
        sampling_warns <<- c(sampling_warns, conditionMessage(w)); invokeRestart("muffleWarning")
      }))
    fit <- brm(form, data = d, family = fam, prior = pri, empty = TRUE)
    fit$fit <- sf
    fit <- rename_pars(fit)
  })
  sample_s <- unname(t_sample["elapsed"])

  dr <- posterior::as_draws_df(fit)
  vars <- c(a = "b_Intercept", b_w = "b_w", b_b = "b_m_c", b_x = "b_w:m_c",
            sd_a = "sd_la__Intercept", sd_b = "sd_la__w", cor_ab = "cor_la__Intercept__w")
  if (family == "negbinomial") vars <- c(vars, phi = "shape")
  sm_tab <- posterior::summarise_draws(
    posterior::subset_draws(dr, variable = unname(vars)),
    mean = mean, sd = stats::sd,
    q2.5 = function(x) unname(stats::quantile(x, 0.025)),
    q97.5 = function(x) unname(stats::quantile(x, 0.975)),
    rhat = posterior::rhat, ess_bulk = posterior::ess_bulk, ess_tail = posterior::ess_tail)
  row <- function(v) {
    r <- sm_tab[sm_tab$variable == v, ]
    list(estimate = r$mean, se = r$sd, mean = r$mean, sd = r$sd, q2.5 = r$q2.5,
         q97.5 = r$q97.5, rhat = r$rhat, ess_bulk = r$ess_bulk, ess_tail = r$ess_tail)
  }
  fixed <- list()
  for (p in c("a", "b_w", "b_b", "b_x")) {
    fixed[[p]] <- c(list(term = names(PARAM_NAMES)[PARAM_NAMES == p]), row(vars[[p]]))
  }
  re_rows <- lapply(c(sd_a = "sd_a", sd_b = "sd_b", cor_ab = "cor_ab"), function(p) row(vars[[p]]))

  # whole-model diagnostics (all parameters, as rstan reports them)
  all_sum <- posterior::summarise_draws(
    posterior::subset_draws(dr, variable = setdiff(posterior::variables(dr), c("lp__"))),
    rhat = posterior::rhat, ess_bulk = posterior::ess_bulk)
  np <- nuts_params(fit)
  divergent <- sum(np$Value[np$Parameter == "divergent__"])
  treedepth <- sum(np$Value[np$Parameter == "treedepth__"] >= 10)
  ess_focus <- min(sm_tab$ess_bulk)
  list(
    family = family, method = "NUTS (brms 0 + Intercept, rstan backend)",
    wall_s = unname(t_total["elapsed"]),
    compile_s = unname(t_compile["elapsed"]),
    sample_s = sample_s,
    chains = opt$chains, iter = opt$iter, warmup = opt$warmup, adapt_delta = opt$adapt_delta,
    converged = max(sm_tab$rhat) < 1.01 && ess_focus > 400 && divergent == 0,
    convergence = list(
      max_rhat = max(sm_tab$rhat), min_ess_bulk = ess_focus, min_ess_tail = min(sm_tab$ess_tail),
      max_rhat_all = max(all_sum$rhat, na.rm = TRUE),
      min_ess_bulk_all = min(all_sum$ess_bulk, na.rm = TRUE),
      ess_bulk_per_s = ess_focus / sample_s,
      ess_bulk_per_s_all = min(all_sum$ess_bulk, na.rm = TRUE) / sample_s,
      divergent = divergent, max_treedepth_hits = treedepth,
      warnings = as.list(unique(sampling_warns))),
    fixed = fixed,
    re = list(sd_a = re_rows$sd_a$estimate, sd_b = re_rows$sd_b$estimate,
              cor_ab = re_rows$cor_ab$estimate, posterior = re_rows),
    phi = if (family == "negbinomial") row("shape")$estimate else NULL,
    phi_posterior = if (family == "negbinomial") row("shape") else NULL,
    priors = as.list(paste(pri$class, pri$coef, pri$prior, sep = " | "))
  )
}

run_peer <- function(peer, d, opt) {
  switch(peer,
         lme4 = fit_lme4(d, opt),
         glmmtmb_pois = fit_glmmtmb(d, opt, "poisson"),
         glmmtmb_nb = fit_glmmtmb(d, opt, "nbinom2"),
         brms_pois = fit_brms(d, opt, "poisson"),
         brms_nb = fit_brms(d, opt, "negbinomial"))
}

write_json <- function(x, path) {
  writeLines(jsonlite::toJSON(x, auto_unbox = TRUE, digits = NA, pretty = TRUE,
                              null = "null", na = "null"), path)
}

# ----------------------------------------------------------------------------- worker
worker_main <- function(opt) {
  d <- load_data(opt$data, opt$outcome)
  res <- tryCatch(
    c(list(status = "ok"), run_peer(opt$worker, d, opt)),
    error = function(e) list(status = "error", message = conditionMessage(e)))
  write_json(res, opt$out)
}

# ----------------------------------------------------------------------------- driver
self_path <- function() {
  f <- grep("^--file=", commandArgs(FALSE), value = TRUE)
  normalizePath(sub("^--file=", "", f[1]))
}

pkg_version <- function(p) tryCatch(as.character(utils::packageVersion(p)),
                                    error = function(e) NA_character_)

driver_main <- function(opt) {
  d <- load_data(opt$data, opt$outcome)
  meta <- list(
    data = list(path = normalizePath(opt$data), outcome = opt$outcome,
                n_lsoa = nrow(d), n_la = nlevels(d$la), x_bar = attr(d, "x_bar"),
                total_y = sum(d$y), total_children = sum(d$children)),
    model = "y ~ w * m_c + offset(log(children)) + (1 + w | la)",
    parameters = as.list(PARAM_NAMES),
    settings = list(which = I(opt$which), chains = opt$chains, iter = opt$iter,
                    warmup = opt$warmup, seed = opt$seed, timeout_s = opt$timeout,
                    cores = opt$cores, adapt_delta = opt$adapt_delta),
    session = list(R = R.version.string, platform = R.version$platform,
                   nproc = parallel::detectCores(),
                   packages = lapply(c(lme4 = "lme4", glmmTMB = "glmmTMB", brms = "brms",
                                       rstan = "rstan", StanHeaders = "StanHeaders",
                                       posterior = "posterior", TMB = "TMB", Matrix = "Matrix"),
                                     pkg_version),
                   started = format(Sys.time(), "%Y-%m-%dT%H:%M:%S%z")),
    peers = list())
  rm(d)
  have_timeout <- nzchar(Sys.which("timeout"))
  rscript <- file.path(R.home("bin"), "Rscript")
  for (peer in opt$which) {
    tmp <- tempfile(paste0("peer_", peer, "_"), fileext = ".json")
    log <- sub("\\.json$", ".log", tmp)
    wargs <- c(shQuote(self_path()), shQuote(opt$data), shQuote(opt$outcome), shQuote(tmp),
               "--worker", peer, "--chains", opt$chains, "--iter", opt$iter,
               "--warmup", opt$warmup, "--seed", opt$seed, "--cores", opt$cores,
               "--adapt_delta", opt$adapt_delta)
    message(sprintf("[peers] %s: start (timeout %g s)", peer, opt$timeout))
    t0 <- Sys.time()
    if (have_timeout) {
      # GNU timeout signals the whole process group, so rstan's forked chains die too.
      rc <- system2("timeout", c("--kill-after=30", as.character(opt$timeout), rscript, wargs),
                    stdout = log, stderr = log)
      timed_out <- rc %in% c(124, 137)
    } else {
      rc <- system2(rscript, wargs, stdout = log, stderr = log, timeout = opt$timeout)
      timed_out <- rc == 124
    }
    elapsed <- as.numeric(difftime(Sys.time(), t0, units = "secs"))
    if (timed_out) {
      res <- list(status = "timeout",
                  message = sprintf("did not finish in %g s", opt$timeout),
                  wall_s = NULL)
    } else if (file.exists(tmp)) {
      res <- jsonlite::fromJSON(tmp, simplifyVector = FALSE)
    } else {
      tail_log <- if (file.exists(log)) utils::tail(readLines(log, warn = FALSE), 20) else ""
      res <- list(status = "error", message = sprintf("worker exited with code %s", rc),
                  log_tail = as.list(tail_log))
    }
    res$process_s <- elapsed
    meta$peers[[peer]] <- res
    message(sprintf("[peers] %s: %s in %.1f s", peer, res$status, elapsed))
    write_json(meta, opt$out)  # partial results survive an interrupted run
    unlink(c(tmp, log))
  }
  meta$session$finished <- format(Sys.time(), "%Y-%m-%dT%H:%M:%S%z")
  write_json(meta, opt$out)
  invisible(meta)
}

opt <- parse_args(commandArgs(trailingOnly = TRUE))
if (!is.na(opt$worker)) worker_main(opt) else driver_main(opt)

#!/usr/bin/env Rscript
# Print a one-line-per-peer table from a peers.R OUT.json (optionally against a truth JSON
# written by make_data.R).
#   Rscript bench/peers/summarise.R OUT.json [TRUTH.json]
args <- commandArgs(trailingOnly = TRUE)
r <- jsonlite::fromJSON(args[1], simplifyVector = FALSE)
truth <- if (length(args) > 1) jsonlite::fromJSON(args[2]) else NULL
num <- function(x) if (is.null(x)) NA_real_ else as.numeric(x)
cat(sprintf("data: %s  outcome=%s  n_lsoa=%d  n_la=%d\n", r$data$path, r$data$outcome,
            r$data$n_lsoa, r$data$n_la))
pars <- c("a", "b_w", "b_b", "b_x")
rows <- lapply(names(r$peers), function(p) {
  x <- r$peers[[p]]
  if (!identical(x$status, "ok")) {
    return(data.frame(peer = p, status = x$status, wall_s = NA, compile_s = NA,
                      sample_s = NA, conv = NA, a = NA, b_w = NA, b_b = NA, b_x = NA,
                      sd_a = NA, sd_b = NA, cor = NA, phi = NA, rhat = NA, ess_s = NA))
  }
  est <- sapply(pars, function(k) sprintf("%.3f(%.3f)", num(x$fixed[[k]]$estimate),
                                           num(x$fixed[[k]]$se)))
  data.frame(peer = p, status = x$status, wall_s = round(num(x$wall_s), 1),
             compile_s = round(num(x$compile_s), 1), sample_s = round(num(x$sample_s), 1),
             conv = isTRUE(x$converged), a = est[["a"]], b_w = est[["b_w"]],
             b_b = est[["b_b"]], b_x = est[["b_x"]],
             sd_a = round(num(x$re$sd_a), 3), sd_b = round(num(x$re$sd_b), 3),
             cor = round(num(x$re$cor_ab), 2), phi = round(num(x$phi), 2),
             rhat = round(num(x$convergence$max_rhat), 3),
             ess_s = round(num(x$convergence$ess_bulk_per_s), 1))
})
tab <- do.call(rbind, rows)
if (!is.null(truth)) {
  tab <- rbind(tab, data.frame(peer = "TRUTH", status = "", wall_s = NA, compile_s = NA,
                               sample_s = NA, conv = NA, a = truth$a, b_w = truth$b_w,
                               b_b = truth$b_b, b_x = truth$b_x, sd_a = truth$sd_a,
                               sd_b = truth$sd_b, cor = truth$cor_ab, phi = truth$phi,
                               rhat = NA, ess_s = NA))
}
print(tab, row.names = FALSE)

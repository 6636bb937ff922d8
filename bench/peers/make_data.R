#!/usr/bin/env Rscript
# Synthetic neighbourhood table with known social-gradient parameters, for developing and
# sanity-checking the R peers.
#
#   Rscript bench/peers/make_data.R OUT.csv [--n-la 20] [--n-per 50] [--seed 1]
#
# Columns: lsoa, la, children, income, referrals (NegBin2, phi = 10), referrals_pois (Poisson).
# Truth (also written to OUT.truth.json): a=-3, b_w=0.48, b_b=0.25, b_x=-0.26,
# sd_a=0.25, sd_b=0.15, cor_ab=0.3, phi=10.
# w and m_c are computed exactly as socialgradient.deprivation.decompose does.

args <- commandArgs(trailingOnly = TRUE)
if (length(args) < 1) stop("usage: make_data.R OUT.csv [--n-la N] [--n-per N] [--seed S]")
out <- args[1]
opt <- function(name, default) {
  i <- match(name, args)
  if (is.na(i)) default else as.numeric(args[i + 1])
}
n_la <- opt("--n-la", 20)
n_per <- opt("--n-per", 50)
seed <- opt("--seed", 1)
set.seed(seed)

truth <- list(a = -3, b_w = 0.48, b_b = 0.25, b_x = -0.26,
              sd_a = 0.25, sd_b = 0.15, cor_ab = 0.3, phi = 10)

n <- n_la * n_per
la_id <- rep(seq_len(n_la), each = n_per)
la <- sprintf("E%08d", 6000000 + la_id)
lsoa <- sprintf("E%08d", 1000000 + seq_len(n))
# LA-level deprivation varies between LAs; LSOAs vary around it (logit scale).
la_logit <- rnorm(n_la, qlogis(0.15), 0.45)
income <- plogis(la_logit[la_id] + rnorm(n, 0, 0.7))
children <- pmax(20, round(rlnorm(n, log(300), 0.35)))

# decomposition (children-weighted), x in 10-point units
x <- 10 * income
m_la <- tapply(children * x, la_id, sum) / tapply(children, la_id, sum)
x_bar <- sum(children * x) / sum(children)
w <- x - m_la[la_id]
m_c <- m_la - x_bar

S <- matrix(c(truth$sd_a^2, truth$cor_ab * truth$sd_a * truth$sd_b,
              truth$cor_ab * truth$sd_a * truth$sd_b, truth$sd_b^2), 2)
re <- matrix(rnorm(2 * n_la), n_la) %*% chol(S)
eta <- log(children) + truth$a + truth$b_w * w + truth$b_b * m_c[la_id] +
  truth$b_x * w * m_c[la_id] + re[la_id, 1] + re[la_id, 2] * w
mu <- exp(eta)
referrals <- rnbinom(n, size = truth$phi, mu = mu)
referrals_pois <- rpois(n, mu)

d <- data.frame(lsoa = lsoa, la = la, children = children,
                income = round(income, 6), referrals = referrals,
                referrals_pois = referrals_pois)
write.csv(d, out, row.names = FALSE)
truth_out <- sub("\\.csv$", "", out)
truth$n_lsoa <- n; truth$n_la <- n_la; truth$seed <- seed
writeLines(jsonlite::toJSON(truth, auto_unbox = TRUE, digits = NA, pretty = TRUE),
           paste0(truth_out, ".truth.json"))
cat(sprintf("wrote %s: %d LSOAs in %d LAs, mean referrals %.1f\n", out, n, n_la, mean(referrals)))

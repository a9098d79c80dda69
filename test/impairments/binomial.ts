/**
 * The central 99 % interval of a binomial count: the smallest [lo, hi] with
 * P(X < lo) ≤ 0.5 % and P(X > hi) ≤ 0.5 %, computed exactly from the pmf (no normal approximation).
 */
export function binomialInterval99(n: number, p: number): { lo: number; hi: number } {
  const logPmf = (k: number): number => logChoose(n, k) + k * Math.log(p) + (n - k) * Math.log1p(-p);
  let cumulative = 0;
  let lo = 0;
  for (let k = 0; k <= n; k++) {
    const next = cumulative + Math.exp(logPmf(k));
    if (next > 0.005) {
      lo = k;
      break;
    }
    cumulative = next;
  }
  let upper = 0;
  let hi = n;
  for (let k = n; k >= 0; k--) {
    const next = upper + Math.exp(logPmf(k));
    if (next > 0.005) {
      hi = k;
      break;
    }
    upper = next;
  }
  return { lo, hi };
}

function logChoose(n: number, k: number): number {
  return logFactorial(n) - logFactorial(k) - logFactorial(n - k);
}

const logFactorials: number[] = [0];
function logFactorial(n: number): number {
  for (let i = logFactorials.length; i <= n; i++) logFactorials[i] = logFactorials[i - 1]! + Math.log(i);
  return logFactorials[n]!;
}

"""The consent banner: readable source (banner.js, banner.css, i18n/) and the per-site bundle builder."""

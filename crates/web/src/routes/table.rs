//! The router as a list: every page route is added through [`Routes::route`], which records its
//! path beside handing it to axum, so that the list cannot drift from what is served. The
//! attack suite (`tests/it/attack.rs`) walks [`super::table`] and fails on any route missing from
//! its role matrix.

use crate::AppState;
use axum::Router;
use axum::routing::MethodRouter;

#[derive(Debug, Default)]
#[must_use]
pub struct Routes {
    router: Router<AppState>,
    paths: Vec<&'static str>,
}

impl Routes {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn route(mut self, path: &'static str, methods: MethodRouter<AppState>) -> Self {
        self.router = self.router.route(path, methods);
        self.paths.push(path);
        self
    }

    pub fn merge(mut self, other: Routes) -> Self {
        self.router = self.router.merge(other.router);
        self.paths.extend(other.paths);
        self
    }

    /// Every path, in the order added.
    pub fn paths(&self) -> &[&'static str] {
        &self.paths
    }

    pub fn into_router(self) -> Router<AppState> {
        self.router
    }
}

//! Writer of the attribute syntax. (Being written: see the template helper's task.)

use super::Template;

pub fn to_text(_t: &Template) -> String {
    String::new()
}

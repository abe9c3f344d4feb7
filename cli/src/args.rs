//! Options shared by every command, declared once for clap.

use clap::Args;

/// How to reach oned; without them, `ONE_XMLRPC` / `~/.one/one_endpoint` and `ONE_AUTH` /
/// `~/.one/one_auth` as every OpenNebula client.
#[derive(Args, Debug, Clone, Default)]
pub struct ConnOpts {
    /// User name used to connect to OpenNebula (asks for the password unless --password)
    #[arg(long = "user", id = "conn-user", global = true, value_name = "NAME")]
    pub user: Option<String>,
    /// Password to authenticate with OpenNebula
    #[arg(
        long = "password",
        id = "conn-password",
        global = true,
        value_name = "PASSWORD"
    )]
    pub password: Option<String>,
    /// URL of OpenNebula's XML-RPC endpoint
    #[arg(
        long = "endpoint",
        id = "conn-endpoint",
        global = true,
        value_name = "URL"
    )]
    pub endpoint: Option<String>,
    /// Print what is done to each object
    #[arg(long = "verbose", id = "conn-verbose", global = true)]
    pub verbose: bool,
}

/// `-x`, `-j`, `-y`: the object document instead of a table.
#[derive(Args, Debug, Clone, Default)]
pub struct FormatOpts {
    /// Show the resource in XML format
    #[arg(short = 'x', long = "xml", conflicts_with_all = ["json", "yaml"])]
    pub xml: bool,
    /// Show the resource in JSON format
    #[arg(short = 'j', long = "json", conflicts_with = "yaml")]
    pub json: bool,
    /// Show the resource in YAML format
    #[arg(short = 'y', long = "yaml")]
    pub yaml: bool,
}

impl FormatOpts {
    pub fn any(&self) -> bool {
        self.xml || self.json || self.yaml
    }
}

/// The options of every `list`.
#[derive(Args, Debug, Clone, Default)]
pub struct ListOpts {
    /// Selects columns to display (e.g. ID,NAME,STAT)
    #[arg(
        short = 'l',
        long = "list",
        value_name = "COLUMNS",
        value_delimiter = ','
    )]
    pub list: Vec<String>,
    /// Filter rows: COLUMN=VALUE pairs; operators =, !=, <, <=, >, >=, ~ (contains)
    #[arg(short = 'f', long, value_name = "FILTERS", value_delimiter = ',')]
    pub filter: Vec<String>,
    /// Logical operator between filters: AND (default) or OR
    #[arg(long, value_name = "OPERATOR")]
    pub operator: Option<String>,
    /// Write the table in CSV format
    #[arg(long)]
    pub csv: bool,
    /// Delimiter for --csv
    #[arg(long = "csv-del", value_name = "DELIMITER")]
    pub csv_del: Option<String>,
    /// Hides the header of the table
    #[arg(long = "no-header")]
    pub no_header: bool,
    /// Widen the given columns so that no value is cut
    #[arg(long, value_name = "COLUMNS", value_delimiter = ',')]
    pub adjust: Vec<String>,
    /// Set the width of columns (e.g. name=20)
    #[arg(short = 's', long, value_name = "COLUMN=SIZE", value_delimiter = ',')]
    pub size: Vec<String>,
    /// Also expand these columns to fill the terminal
    #[arg(long, value_name = "COLUMNS", value_delimiter = ',')]
    pub expand: Vec<String>,
    /// Do not expand columns to the terminal's width
    #[arg(long = "no-expand")]
    pub no_expand: bool,
    /// Accepted for compatibility: output is never paged
    #[arg(long = "no-pager")]
    pub no_pager: bool,
    /// Describe the list columns
    #[arg(long)]
    pub describe: bool,
    /// Do not translate user and group IDs
    #[arg(short = 'n', long)]
    pub numeric: bool,
    /// Show units in kilobytes
    #[arg(short = 'k', long)]
    pub kilobytes: bool,
    #[command(flatten)]
    pub format: FormatOpts,
}

/// Locks: `--use` (default), `--manage`, `--admin`, `--all`.
#[derive(Args, Debug, Clone, Default)]
pub struct LockOpts {
    /// Lock use, manage and admin actions (default)
    #[arg(long = "use")]
    pub use_: bool,
    /// Lock manage and admin actions
    #[arg(long)]
    pub manage: bool,
    /// Lock admin actions
    #[arg(long)]
    pub admin: bool,
    /// Lock all actions
    #[arg(long)]
    pub all: bool,
}

impl LockOpts {
    pub fn level(&self) -> oca::LockLevel {
        if self.all {
            oca::LockLevel::All
        } else if self.admin {
            oca::LockLevel::Admin
        } else if self.manage {
            oca::LockLevel::Manage
        } else {
            oca::LockLevel::Use
        }
    }
}
